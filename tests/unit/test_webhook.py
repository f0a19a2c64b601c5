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
    assert webhook.verify(provider, SECRET, body=b"{}", headers=headers) is ok


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
    app = webhook.Receiver(SECRET, lambda p: pushes.append(p) or 3, count=lambda p, r: counts.append((p, r)))
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


# --- malformed signatures: a bad signature is 401, never an exception ---------------------


@pytest.mark.parametrize("provider", ["github", "generic"])
@pytest.mark.parametrize(
    "value",
    [
        "sha256=" + "é" * 64,  # non-ASCII (hmac.compare_digest raises TypeError on non-ASCII str)
        "sha256=" + "\u20ac" * 64,  # not even latin-1: only a non-WSGI caller can pass this
        "sha256=",
        "sha256=" + "0" * 63,
        "sha256=" + "g" * 64,
        "SHA256=" + sign(b"{}")[7:],
        " " + sign(b"{}"),
    ],
)
def test_malformed_signatures_are_refused_not_raised(provider: str, value: str) -> None:
    header = "x-hub-signature-256" if provider == "github" else "x-signature"
    assert webhook.verify(provider, SECRET, body=b"{}", headers={header: value}) is False


@pytest.mark.parametrize("token", ["é" * 10, "\u20ac", "", SECRET.decode() + " "])
def test_malformed_gitlab_tokens_are_refused_not_raised(token: str) -> None:
    assert webhook.verify("gitlab", SECRET, body=b"{}", headers={"x-gitlab-token": token}) is False


def test_non_ascii_signature_is_401_through_the_receiver() -> None:
    counts: list[tuple[str, str]] = []
    app = webhook.Receiver(SECRET, lambda p: 1, count=lambda p, r: counts.append((p, r)))
    body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "https://h/o/r.git"}}).encode()
    # WSGI hands header bytes over as latin-1 text, as waitress does for b"sha256=\xe9..."
    status, doc = call(app, "/hook/github", body, {"X-Hub-Signature-256": "sha256=" + "\xe9" * 64})
    assert status.startswith("401"), doc
    assert counts == [("github", "unauthorized")]


# --- replays: a delivery seen before is acknowledged and ignored ---------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def push_body(after: str = "a" * 40) -> bytes:
    return json.dumps(
        {"ref": "refs/heads/main", "after": after, "repository": {"clone_url": "https://h/o/r.git"}}
    ).encode()


def test_a_replayed_delivery_is_ignored_and_counted() -> None:
    pushes: list[webhook.Push] = []
    counts: list[tuple[str, str]] = []
    app = webhook.Receiver(SECRET, lambda p: pushes.append(p) or 1, count=lambda p, r: counts.append((p, r)))
    body = push_body()
    headers = {"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    assert call(app, "/hook/github", body, headers) == ("202 Accepted", {"triggered": 1})
    assert call(app, "/hook/github", body, headers) == ("200 OK", {"ignored": "duplicate delivery"})
    # the delivery id is not covered by the signature: the same signed body under a new id is a copy too
    fresh = {**headers, "X-GitHub-Delivery": "00000000-0000-0000-0000-000000000001"}
    assert call(app, "/hook/github", body, fresh)[0] == "200 OK"
    # a new push (another body, another id) goes through
    body2 = push_body("b" * 40)
    headers2 = {"X-Hub-Signature-256": sign(body2), "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0959"}
    assert call(app, "/hook/github", body2, headers2)[0] == "202 Accepted"
    assert len(pushes) == 2
    assert counts == [("github", "accepted"), ("github", "duplicate"), ("github", "duplicate"), ("github", "accepted")]


def test_gitlab_retries_share_the_idempotency_key() -> None:
    pushes: list[webhook.Push] = []
    app = webhook.Receiver(SECRET, lambda p: pushes.append(p) or 1)
    body = json.dumps({"ref": "refs/heads/main", "project": {"git_http_url": "https://h/o/r.git"}}).encode()
    first = {"X-Gitlab-Token": SECRET.decode(), "Idempotency-Key": "k1", "X-Gitlab-Event-UUID": "e1"}
    assert call(app, "/hook/gitlab", body, first)[0].startswith("202")
    retry = {**first, "X-Gitlab-Event-UUID": "e2"}
    assert call(app, "/hook/gitlab", body + b" ", retry)[0] == "200 OK", "same Idempotency-Key"
    old_gitlab = {"X-Gitlab-Token": SECRET.decode(), "X-Gitlab-Event-UUID": "e3"}
    assert call(app, "/hook/gitlab", body + b"  ", old_gitlab)[0].startswith("202")
    assert call(app, "/hook/gitlab", body + b"   ", old_gitlab)[0] == "200 OK", "same X-Gitlab-Event-UUID"
    assert len(pushes) == 2


def test_generic_senders_may_repeat_a_body_under_new_ids() -> None:
    pushes: list[webhook.Push] = []
    app = webhook.Receiver(SECRET, lambda p: pushes.append(p) or 1)
    body = json.dumps({"url": "ssh://git@h/x/y.git", "branch": "main"}).encode()
    for i in range(3):
        assert call(app, "/hook/generic", body, {"X-Signature": sign(body), "X-Delivery-Id": f"d{i}"})[0].startswith(
            "202"
        )
    assert call(app, "/hook/generic", body, {"X-Signature": sign(body), "X-Delivery-Id": "d1"})[0] == "200 OK"
    assert call(app, "/hook/generic", body, {"X-Signature": sign(body)})[0].startswith("202"), "no id: no dedup"
    assert len(pushes) == 4


def test_an_unsigned_copy_cannot_poison_the_memory() -> None:
    pushes: list[webhook.Push] = []
    app = webhook.Receiver(SECRET, lambda p: pushes.append(p) or 1)
    body = push_body()
    forged = {"X-Hub-Signature-256": sign(body, b"not-the-secret-at-all"), "X-GitHub-Delivery": "d1"}
    assert call(app, "/hook/github", body, forged)[0].startswith("401")
    assert call(app, "/hook/github", body, {**forged, "X-Hub-Signature-256": sign(body)})[0].startswith("202")
    assert len(pushes) == 1


def test_a_failed_delivery_can_be_retried() -> None:
    calls: list[webhook.Push] = []

    def on_push(p: webhook.Push) -> int:
        calls.append(p)
        if len(calls) == 1:
            raise RuntimeError("API server unreachable")
        return 1

    app = webhook.Receiver(SECRET, on_push)
    body = push_body()
    headers = {"X-Hub-Signature-256": sign(body), "X-GitHub-Delivery": "d1"}
    with pytest.raises(RuntimeError):
        call(app, "/hook/github", body, headers)
    assert call(app, "/hook/github", body, headers)[0].startswith("202"), "the retry of a failure is no duplicate"
    assert len(calls) == 2


def test_the_delivery_memory_forgets_after_the_window_and_stays_bounded() -> None:
    clock = Clock()
    seen = webhook.Deliveries(capacity=3, window=60.0, clock=clock)
    assert seen.claim(["a"])
    assert not seen.claim(["a"])
    assert not seen.claim(["x", "a"]), "any known key makes a duplicate"
    assert len(seen) == 1, "a refused claim remembers nothing"
    clock.now += 61
    assert seen.claim(["a"]), "forgotten after the window"
    for k in "bcdefg":
        assert seen.claim([k])
    assert len(seen) == 3
    assert seen.claim(["a"]), "the oldest went first"
