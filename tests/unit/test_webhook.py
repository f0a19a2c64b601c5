"""Webhook parsing and signature checks (pure logic)."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from typing import Any

import pytest

from reconciler.source import webhook

SECRET = b"0123456789abcdef-secret"


@pytest.mark.parametrize(
    "url",
    [
        "ssh://git@github.com/org/fleet.git",
        "git@github.com:org/fleet.git",
        "https://github.com/org/fleet",
        "https://user@GitHub.com/org/fleet.git/",
        "ssh://git@github.com:22/org/fleet.git",
    ],
)
def test_repo_key_unifies_url_spellings(url: str) -> None:
    assert webhook.repo_key(url) == "github.com/org/fleet"


def test_repo_key_file_urls() -> None:
    assert webhook.repo_key("file:///srv/git/fleet.git") == "/srv/git/fleet"


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("provider", "headers", "ok"),
    [
        ("github", {"x-hub-signature-256": sign(b"{}")}, True),
        ("github", {"x-hub-signature-256": sign(b"{}", b"other-secret-value")}, False),
        ("github", {"x-hub-signature-256": sign(b"{}")[:-1] + "0"}, False),
        ("github", {}, False),
        ("github", {"x-hub-signature-256": "sha1=abc"}, False),
        ("gitlab", {"x-gitlab-token": SECRET.decode()}, True),
        ("gitlab", {"x-gitlab-token": "nope"}, False),
        ("generic", {"x-signature": sign(b"{}")}, True),
        ("generic", {"x-hub-signature-256": sign(b"{}")}, False),
    ],
)
def test_verify(provider: str, headers: dict[str, str], ok: bool) -> None:
    assert webhook.verify(provider, SECRET, b"{}", headers) is ok


def test_parsers() -> None:
    gh = webhook.parse_github(
        {
            "ref": "refs/heads/main",
            "repository": {"clone_url": "https://github.com/o/r.git", "ssh_url": "git@github.com:o/r.git"},
        }
    )
    assert gh == webhook.Push(frozenset({"github.com/o/r"}), "main")
    gl = webhook.parse_gitlab({"ref": "refs/tags/v1", "project": {"git_ssh_url": "git@gitlab.com:g/p.git"}})
    assert gl == webhook.Push(frozenset({"gitlab.com/g/p"}), None)
    gen = webhook.parse_generic({"url": "ssh://git@h/x/y.git", "branch": "dev"})
    assert gen == webhook.Push(frozenset({"h/x/y"}), "dev")


def call(app: webhook.Receiver, path: str, body: bytes, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }
    status: list[str] = []
    out = b"".join(app(environ, lambda s, h: status.append(s)))
    return status[0], json.loads(out)


def test_receiver_triggers_only_on_valid_signatures() -> None:
    pushes: list[webhook.Push] = []
    counts: list[tuple[str, str]] = []
    app = webhook.Receiver(SECRET, lambda p: pushes.append(p) or 3, lambda p, r: counts.append((p, r)))
    body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "https://h/o/r.git"}}).encode()
    assert call(app, "/hook/github", body, {"X-Hub-Signature-256": sign(body + b" ")})[0].startswith("401")
    assert pushes == []
    status, doc = call(app, "/hook/github", body, {"X-Hub-Signature-256": sign(body)})
    assert status.startswith("202")
    assert doc == {"triggered": 3}
    assert pushes == [webhook.Push(frozenset({"h/o/r"}), "main")]
    assert call(app, "/hook/github", b"not json", {"X-Hub-Signature-256": sign(b"not json")})[0].startswith("400")
    assert call(app, "/hook/bitbucket", body, {})[0].startswith("404")
    assert counts == [("github", "unauthorized"), ("github", "accepted"), ("github", "invalid")]
