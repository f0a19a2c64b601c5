"""Anyone who can reach the Pod's ports: `reconciler run` as a real process, attacked over
real sockets.  Its health, metrics and webhook listeners must keep answering while other
connections idle, trickle, announce bodies they never send or flood the port; and a
signed webhook delivery is acted on once, however often it is replayed.

The figures (5 s read timeout, 256 health connections, 5 MiB webhook bodies) are those of
reconciler/controller.py, documented in docs/controller.md.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from controllers import WEBHOOK_SECRET, Controller, Env, free_port

READ_TIMEOUT = 5  # reconciler/controller.py *_LIMITS.read_timeout
REQUESTED_AT = "gitops.reconciler.dev/requested-at"


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 1.0
) -> tuple[int, bytes] | str:
    """(status, body), or "timed out"/"refused" as text so that an assertion shows it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)  # str values go out as latin-1 bytes, as a raw client would send them
        if body or method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read()
    except TimeoutError:
        return "timed out"
    except ConnectionError as e:
        return f"refused: {e}"
    finally:
        conn.close()


def healthz(ctl: Controller, timeout: float = 1.0) -> int | str:
    got = request(ctl.health_port, "GET", "/healthz", timeout=timeout)
    return got if isinstance(got, str) else got[0]


def wait_up(ctl: Controller, webhook_port: int = 0) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hook_up = not webhook_port or not isinstance(request(webhook_port, "GET", "/hook/none"), str)
        if healthz(ctl) == 200 and hook_up:
            return
        assert ctl.proc.poll() is None, ctl.log.read_text()[-2000:]
        time.sleep(0.2)
    raise AssertionError(f"controller did not come up: {ctl.log.read_text()[-2000:]}")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Read (and drop) whatever comes until the server closes; False if it is still open after ``within``."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def signed_push(url: str, after: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": "refs/heads/main", "after": after, "repository": {"clone_url": url}}).encode()
    sig = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sig,
    }


def proc_status(pid: int) -> tuple[int, int]:
    """(threads, resident KiB) of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


# ------------------------------------------------------------------------------------------


def test_idle_connections_do_not_block_health(env: Env, namespace: str) -> None:
    ctl = env.start("--watch-namespace", namespace)
    wait_up(ctl)
    opened = time.monotonic()
    idle = connect(ctl.health_port)  # sends nothing at all
    half = connect(ctl.health_port)
    half.sendall(b"GET /heal")  # half a request line, then silence
    time.sleep(0.3)  # let the server pick them up first
    for _ in range(3):
        t0 = time.monotonic()
        assert healthz(ctl, timeout=1.0) == 200, "/healthz must answer while other connections hang"
        assert time.monotonic() - t0 < 1.0
    metrics = request(ctl.metrics_port, "GET", "/metrics")
    assert metrics != "timed out"
    assert metrics[0] == 200
    for sock, what in ((idle, "an idle connection"), (half, "half a request line")):
        assert closed_by_server(sock, within=READ_TIMEOUT + 10), f"{what} was never closed by the server"
        took = time.monotonic() - opened
        assert READ_TIMEOUT - 1 <= took <= READ_TIMEOUT + 4, f"{what} closed after {took:.1f}s"
        sock.close()


def test_a_stalled_webhook_body_blocks_nothing(env: Env, namespace: str) -> None:
    port = free_port()
    ctl = env.start("--watch-namespace", namespace, webhook_port=port)
    wait_up(ctl, port)
    body, headers = signed_push("https://git.invalid/org/fleet.git", "a" * 40)
    stalled = connect(port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    stalled.sendall(
        f"POST /hook/github HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 5242880\r\n\r\n".encode() + body[:10]
    )
    opened = time.monotonic()
    time.sleep(0.3)
    assert healthz(ctl, timeout=1.0) == 200
    got = request(port, "POST", "/hook/github", body, headers, timeout=2.0)
    assert got == (202, b'{"triggered": 0}\n'), "another signed webhook must be answered meanwhile"
    assert closed_by_server(stalled, within=READ_TIMEOUT + 10), "the stalled upload was never dropped"
    took = time.monotonic() - opened
    assert READ_TIMEOUT - 1 <= took <= READ_TIMEOUT + 4, f"dropped after {took:.1f}s"
    stalled.close()


def test_oversize_requests_are_refused_before_they_are_read(env: Env, namespace: str) -> None:
    port = free_port()
    ctl = env.start("--watch-namespace", namespace, webhook_port=port)
    wait_up(ctl, port)
    cases = [
        # the webhook takes 5 MiB at most: one byte more is refused on the announced length alone
        (port, b"POST /hook/github HTTP/1.1\r\nHost: x\r\nContent-Length: 5242881\r\n\r\n{}", b"413"),
        # probes are GETs: they take no body at all
        (ctl.health_port, b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nxx", b"413"),
        # nor a header block of 64 KiB (16 KiB at most)
        (ctl.health_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 65536 + b"\r\n\r\n", b"431"),
        (port, b"POST /hook/github HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 65536 + b"\r\n\r\n", b"431"),
    ]
    for target, raw, want in cases:
        sock = connect(target)
        t0 = time.monotonic()
        sock.sendall(raw)
        sock.settimeout(2)
        try:
            answer = sock.recv(200)
        except TimeoutError:
            answer = b"(nothing within 2s)"
        sock.close()
        assert answer.split(b" ")[1:2] == [want], f"{raw[:60]!r}...: {answer!r}"
        assert time.monotonic() - t0 < 2
    assert healthz(ctl) == 200


def test_a_connection_flood_leaves_health_answering_and_costs_no_threads(env: Env, namespace: str) -> None:
    port = free_port()
    ctl = env.start("--watch-namespace", namespace, webhook_port=port)
    wait_up(ctl, port)
    time.sleep(1)
    threads0, rss0 = proc_status(ctl.proc.pid)
    flood = [connect(ctl.health_port) for _ in range(200)] + [connect(port) for _ in range(200)]
    try:
        time.sleep(1)
        t0 = time.monotonic()
        assert healthz(ctl, timeout=1.0) == 200, "/healthz under a flood of 200 idle connections"
        assert time.monotonic() - t0 < 1.0
        threads1, rss1 = proc_status(ctl.proc.pid)
        assert threads1 <= threads0 + 2, f"threads went from {threads0} to {threads1}"
        assert rss1 - rss0 < 32 * 1024, f"resident memory grew by {(rss1 - rss0) // 1024} MiB"
    finally:
        for s in flood:
            s.close()
    # the webhook port's flood went beyond its 64 connections: it serves again once they are gone
    body, headers = signed_push("https://git.invalid/org/fleet.git", "c" * 40)
    deadline = time.monotonic() + READ_TIMEOUT + 5
    while (got := request(port, "POST", "/hook/github", body, headers, timeout=2.0)) != (202, b'{"triggered": 0}\n'):
        assert time.monotonic() < deadline, got
        time.sleep(0.5)


def test_a_non_ascii_signature_is_401_not_500(env: Env, namespace: str) -> None:
    port = free_port()
    ctl = env.start("--watch-namespace", namespace, webhook_port=port)
    wait_up(ctl, port)
    body, headers = signed_push("https://git.invalid/org/fleet.git", "d" * 40)
    for name in ("X-Hub-Signature-256", "X-Signature"):
        path = "/hook/github" if name == "X-Hub-Signature-256" else "/hook/generic"
        bad = {**headers, name: "sha256=" + "\xe9" * 64}  # sent as the bytes 0xE9
        got = request(port, "POST", path, body, bad)
        assert got[0] == 401, got
    assert 'reconciler_webhook_requests_total{provider="github",result="unauthorized"} 1.0' in ctl.metrics()
    assert not [ln for ln in ctl.lines() if ln.get("level") == "ERROR"]


def test_a_replayed_delivery_is_ignored(env: Env, namespace: str) -> None:
    ns, port = namespace, free_port()
    url = "https://git.invalid/org/fleet.git"  # suspended: never fetched, still woken by a push
    ctl = env.start("--watch-namespace", ns, webhook_port=port)
    env.gitsync(ns, "hooked", url, suspend=True)
    wait_up(ctl, port)

    def stamp() -> Any:
        return ((env.get(ns, "hooked") or {}).get("metadata", {}).get("annotations") or {}).get(REQUESTED_AT)

    body, headers = signed_push(url, "e" * 40)
    assert request(port, "POST", "/hook/github", body, headers) == (202, b'{"triggered": 1}\n')
    # once its watch has listed the GitSync, this replica queues the push in memory (no
    # requested-at); before that it annotates: either way, a duplicate must change nothing
    first = stamp()
    assert first is None or str(first).startswith("webhook"), first
    # GitHub's redelivery: same id, same body
    assert request(port, "POST", "/hook/github", body, headers) == (200, b'{"ignored": "duplicate delivery"}\n')
    # an eavesdropper's replay under a fresh id: the id is not signed, the body is
    replay = {**headers, "X-GitHub-Delivery": str(uuid.uuid4())}
    assert request(port, "POST", "/hook/github", body, replay) == (200, b'{"ignored": "duplicate delivery"}\n')
    time.sleep(1.5)
    assert stamp() == first, "a duplicate must not stamp the GitSync"
    m = ctl.metrics()
    assert 'reconciler_webhook_requests_total{provider="github",result="accepted"} 1.0' in m, "one trigger"
    assert 'reconciler_webhook_requests_total{provider="github",result="duplicate"} 2.0' in m
    assert any("duplicate delivery" in ln.get("msg", "") for ln in ctl.lines())
    # the next push is a new delivery
    body2, headers2 = signed_push(url, "f" * 40)
    assert request(port, "POST", "/hook/github", body2, headers2) == (202, b'{"triggered": 1}\n')
    m = ctl.metrics()
    assert 'reconciler_webhook_requests_total{provider="github",result="accepted"} 2.0' in m
