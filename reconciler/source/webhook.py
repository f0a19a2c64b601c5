"""Push webhooks: a git host says "main moved", the matching GitSyncs reconcile at once.

Polling every interval stays the safety net; the webhook only shortens the wait, so a
request can never make the controller apply anything a poll would not have: it carries
no content we trust, just a hint which repositories to fetch now. Even so it must be
authentic — an unsigned request could make us hammer a git server — so every request is
checked (GitHub ``X-Hub-Signature-256``, GitLab ``X-Gitlab-Token``, or a generic
``X-Signature: sha256=<hmac>``) in constant time, and a bad one gets 401.  Header values
are compared as bytes: a non-ASCII or malformed signature is a bad signature (401), never
an exception (500).

A signed request can still be replayed by whoever saw it, and git hosts redeliver on
timeouts; :class:`Deliveries` remembers recent deliveries, so a second copy is answered
200 "duplicate delivery, ignored" and triggers nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cachetools import TTLCache

log = logging.getLogger("reconciler.webhook")
MAX_BODY = 5 * 1024 * 1024
REPLAY_WINDOW = 3600.0  # seconds a delivery is remembered
REPLAY_CAPACITY = 10_000  # deliveries remembered at most (the oldest go first)


class WebhookProvider(StrEnum):
    """Who sends the push: the path ``/hook/<provider>`` and how its delivery is signed."""

    GITHUB = "github"  # X-Hub-Signature-256: HMAC-SHA256 of the body
    GITLAB = "gitlab"  # X-Gitlab-Token: the shared secret itself
    GENERIC = "generic"  # X-Signature: HMAC-SHA256 of the body


class Result(StrEnum):
    """What became of one request: the ``result`` label of ``reconciler_webhook_requests``."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    PING = "ping"
    REJECTED = "rejected"  # body too large
    UNAUTHORIZED = "unauthorized"


# Where each sender puts its delivery id (lower-cased, as in Receiver's header map); the first
# one present counts.  GitHub's X-GitHub-Delivery is the same on a redelivery; GitLab's
# Idempotency-Key (17.4+) is the same across its retries, X-Gitlab-Event-UUID (14.8+) is the
# fallback for older GitLab.
DELIVERY_HEADERS: dict[str, tuple[str, ...]] = {
    WebhookProvider.GITHUB: ("x-github-delivery",),
    WebhookProvider.GITLAB: ("idempotency-key", "x-gitlab-event-uuid"),
    WebhookProvider.GENERIC: ("x-delivery-id",),
}
# Senders whose push payload is unique per push (it names the old and new commit and a
# timestamp): for them a copy of a signed body is a replay even under a fresh delivery id,
# which the signature does not cover.  A generic sender may legitimately send the same body
# for every push, so its body is not remembered.
UNIQUE_BODIES = frozenset({WebhookProvider.GITHUB, WebhookProvider.GITLAB})


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


def _raw(value: str | None) -> bytes | None:
    """A header value as the bytes that came over the wire (WSGI decodes them as latin-1)."""
    if value is None:
        return None
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI server: nothing a sender could have signed
        return None


def _hmac_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    got = _raw(header)
    if not got or not got.startswith(b"sha256="):
        return False
    want = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(want, got[len(b"sha256=") :])


def verify(provider: str, secret: bytes, *, body: bytes, headers: dict[str, str]) -> bool:
    """Whether the delivery is signed (github, generic: HMAC-SHA256 of the body) or carries the token (gitlab)."""
    if provider == WebhookProvider.GITHUB:
        return _hmac_ok(secret, body, headers.get("x-hub-signature-256"))
    if provider == WebhookProvider.GITLAB:
        token = _raw(headers.get("x-gitlab-token"))
        return token is not None and hmac.compare_digest(secret, token)
    return _hmac_ok(secret, body, headers.get("x-signature"))


def delivery_keys(provider: str, headers: dict[str, str], body: bytes) -> list[str]:
    """What identifies this delivery: the sender's delivery id, and for senders whose bodies are
    unique per push, the digest of the signed body.  Empty: nothing to recognise a copy by."""
    keys = []
    for name in DELIVERY_HEADERS.get(provider, ()):
        value = _raw(headers.get(name))
        if value:
            keys.append(f"{provider}:id:{hashlib.sha256(value).hexdigest()}")
            break
    if provider in UNIQUE_BODIES:
        keys.append(f"{provider}:body:{hashlib.sha256(body).hexdigest()}")
    return keys


class Deliveries:
    """Deliveries seen in the last ``window`` seconds, at most ``capacity`` of them.

    Memory stays bounded whatever a sender does (the oldest are forgotten first), and only
    signed requests are recorded, so nobody without the secret can make us ignore a real
    push.  Per process: with two replicas behind the Service, a copy that reaches the other
    one is accepted there once.
    """

    def __init__(
        self,
        *,
        capacity: int = REPLAY_CAPACITY,
        window: float = REPLAY_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seen: TTLCache[str, bool] = TTLCache(maxsize=capacity, ttl=window, timer=clock)
        self._lock = threading.Lock()

    def claim(self, keys: Sequence[str]) -> bool:
        """Remember ``keys`` and return True, or return False if any of them was seen already."""
        with self._lock:
            if any(k in self._seen for k in keys):
                return False
            for k in keys:
                self._seen[k] = True
            return True

    def release(self, keys: Sequence[str]) -> None:
        """Forget a claim whose handling failed, so that the sender's retry is not a duplicate."""
        with self._lock:
            for k in keys:
                self._seen.pop(k, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


PARSERS: dict[str, Callable[[dict[str, Any]], Push]] = {
    WebhookProvider.GITHUB: parse_github,
    WebhookProvider.GITLAB: parse_gitlab,
    WebhookProvider.GENERIC: parse_generic,
}


class Receiver:
    """A WSGI app at ``/hook/<github|gitlab|generic>``."""

    def __init__(
        self,
        secret: bytes,
        on_push: Callable[[Push], int],
        *,
        count: Callable[[str, str], None] = lambda provider, result: None,
        deliveries: Deliveries | None = None,
    ) -> None:
        self._secret, self._on_push, self._count = secret, on_push, count
        self._deliveries = deliveries if deliveries is not None else Deliveries()

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
            self._count(provider, Result.REJECTED)
            return self._reply(start, "413 Payload Too Large", {"error": "body too large"})
        body = environ["wsgi.input"].read(length)
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        if not verify(provider, self._secret, body=body, headers=headers):
            self._count(provider, Result.UNAUTHORIZED)
            log.warning(
                f"webhook {provider}: bad or missing signature from {environ.get('REMOTE_ADDR')}; ignored",
                extra={"reason": "WebhookUnauthorized"},
            )
            return self._reply(start, "401 Unauthorized", {"error": "bad or missing signature"})
        if provider == WebhookProvider.GITHUB and headers.get("x-github-event") == "ping":
            self._count(provider, Result.PING)
            return self._reply(start, "200 OK", {"ok": "pong"})
        try:
            push = PARSERS[provider](json.loads(body))
        except (ValueError, AttributeError) as e:
            self._count(provider, Result.INVALID)
            return self._reply(start, "400 Bad Request", {"error": f"not a {provider} push payload: {e}"})
        keys = delivery_keys(provider, headers, body)
        if not self._deliveries.claim(keys):
            self._count(provider, Result.DUPLICATE)
            delivery = next((headers[h] for h in DELIVERY_HEADERS[provider] if headers.get(h)), "")
            log.info(
                f"webhook {provider}: duplicate delivery {delivery[:80]!r} (already handled); ignored",
                extra={"reason": "WebhookDuplicate"},
            )
            return self._reply(start, "200 OK", {"ignored": "duplicate delivery"})
        try:
            n = self._on_push(push)
        except BaseException:
            self._deliveries.release(keys)
            raise
        self._count(provider, Result.ACCEPTED)
        log.info(f"webhook {provider}: push to {sorted(push.repos)} ({push.branch}); {n} GitSync(s) triggered")
        return self._reply(start, "202 Accepted", {"triggered": n})

    @staticmethod
    def _reply(start: Callable[..., Any], status: str, doc: dict[str, Any]) -> list[bytes]:
        start(status, [("Content-Type", "application/json")])
        return [json.dumps(doc).encode() + b"\n"]
