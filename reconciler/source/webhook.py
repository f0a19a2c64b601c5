"""Push webhooks: a git host says "main moved", the matching GitSyncs reconcile at once.

Polling every interval stays the safety net; the webhook only shortens the wait, so a
request can never make the controller apply anything a poll would not have: it carries
no content we trust, just a hint which repositories to fetch now. Even so it must be
authentic — an unsigned request could make us hammer a git server — so every request is
checked (GitHub ``X-Hub-Signature-256``, GitLab ``X-Gitlab-Token``, or a generic
``X-Signature: sha256=<hmac>``) in constant time, and a bad one gets 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("reconciler.webhook")
MAX_BODY = 5 * 1024 * 1024


@dataclass(frozen=True)
class Push:
    repos: frozenset[str]  # normalized repository identities (see repo_key)
    branch: str | None  # None: any branch (e.g. a tag push or a generic hook without one)


def repo_key(url: str) -> str:
    """One identity for the many spellings of a repository URL.

    ``ssh://git@github.com/org/repo.git``, ``git@github.com:org/repo.git`` and
    ``https://github.com/org/repo`` are all ``github.com/org/repo``.
    """
    u = url.strip()
    if u.startswith("file://"):
        return u[len("file://") :].rstrip("/").removesuffix(".git")
    m = re.match(r"^(?:[a-z+]+://)?(?:[^@/]+@)?([^/:]+)(?::\d+)?[:/](.+)$", u)
    if not m:
        return u
    host, path = m.group(1).lower(), m.group(2)
    return f"{host}/{path.strip('/').removesuffix('.git')}"


def _branch(ref: str | None) -> str | None:
    if ref and ref.startswith("refs/heads/"):
        return ref[len("refs/heads/") :]
    return None


def _urls(*values: Any) -> frozenset[str]:
    return frozenset(repo_key(v) for v in values if isinstance(v, str) and v)


def parse_github(payload: dict[str, Any]) -> Push:
    r = payload.get("repository") or {}
    return Push(
        _urls(r.get("clone_url"), r.get("ssh_url"), r.get("git_url"), r.get("html_url")), _branch(payload.get("ref"))
    )


def parse_gitlab(payload: dict[str, Any]) -> Push:
    p = payload.get("project") or {}
    return Push(_urls(p.get("git_http_url"), p.get("git_ssh_url"), p.get("web_url")), _branch(payload.get("ref")))


def parse_generic(payload: dict[str, Any]) -> Push:
    urls = payload.get("urls") or [payload.get("url")]
    return Push(_urls(*urls), payload.get("branch") or _branch(payload.get("ref")))


def _hmac_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    want = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, header[len("sha256=") :])


def verify(provider: str, secret: bytes, body: bytes, headers: dict[str, str]) -> bool:
    if provider == "github":
        return _hmac_ok(secret, body, headers.get("x-hub-signature-256"))
    if provider == "gitlab":
        return hmac.compare_digest(secret, (headers.get("x-gitlab-token") or "").encode())
    return _hmac_ok(secret, body, headers.get("x-signature"))


PARSERS: dict[str, Callable[[dict[str, Any]], Push]] = {
    "github": parse_github,
    "gitlab": parse_gitlab,
    "generic": parse_generic,
}


class Receiver:
    """A WSGI app at ``/hook/<github|gitlab|generic>``."""

    def __init__(
        self,
        secret: bytes,
        on_push: Callable[[Push], int],
        count: Callable[[str, str], None] = lambda provider, result: None,
    ) -> None:
        self._secret, self._on_push, self._count = secret, on_push, count

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        provider = path.removeprefix("/hook/")
        if environ.get("REQUEST_METHOD") != "POST" or provider not in PARSERS:
            return self._reply(start, "404 Not Found", {"error": "POST /hook/github|gitlab|generic"})
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._count(provider, "rejected")
            return self._reply(start, "413 Payload Too Large", {"error": "body too large"})
        body = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        if not verify(provider, self._secret, body, headers):
            self._count(provider, "unauthorized")
            log.warning(
                f"webhook {provider}: bad or missing signature from {environ.get('REMOTE_ADDR')}; ignored",
                extra={"reason": "WebhookUnauthorized"},
            )
            return self._reply(start, "401 Unauthorized", {"error": "bad or missing signature"})
        if provider == "github" and headers.get("x-github-event") == "ping":
            self._count(provider, "ping")
            return self._reply(start, "200 OK", {"ok": "pong"})
        try:
            push = PARSERS[provider](json.loads(body))
        except (ValueError, AttributeError) as e:
            self._count(provider, "invalid")
            return self._reply(start, "400 Bad Request", {"error": f"not a {provider} push payload: {e}"})
        n = self._on_push(push)
        self._count(provider, "accepted")
        log.info(f"webhook {provider}: push to {sorted(push.repos)} ({push.branch}); {n} GitSync(s) triggered")
        return self._reply(start, "202 Accepted", {"triggered": n})

    @staticmethod
    def _reply(start: Callable[..., Any], status: str, doc: dict[str, Any]) -> list[bytes]:
        start(status, [("Content-Type", "application/json")])
        return [json.dumps(doc).encode() + b"\n"]
