"""reconciler/report/httpserve.py on real loopback sockets, in-process, with short limits:
what a slow, idle or greedy client gets, and that stop() leaves nothing behind.

The same listeners inside a real `reconciler run` are in tests/integration/test_servers.py.
"""

from __future__ import annotations

import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from reconciler.report import httpserve

SHORT = httpserve.ListenerLimits(
    read_timeout=1, deadline=3, max_body=1024, max_header=4096, max_connections=16, threads=2
)


def hello(environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start("200 OK", [("Content-Type", "text/plain")])
    return [b"ok %d\n" % len(body)]


@pytest.fixture
def server() -> Iterator[httpserve.Server]:
    s = httpserve.serve(name="test", addr="127.0.0.1:0", app=hello, limits=SHORT)
    yield s
    s.stop()


def get(port: int, path: str = "/", timeout: float = 1.0) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return bytes(r.read())


def read_until_closed(sock: socket.socket, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that was."""
    t0, data = time.monotonic(), b""
    sock.settimeout(within)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - t0


def test_a_trickling_client_is_cut_off_at_the_deadline(server: httpserve.Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    t0, closed_after = time.monotonic(), None
    while time.monotonic() - t0 < 10:
        try:
            sock.sendall(b"G")  # one byte every 0.3 s: never idle for read_timeout (1 s)
        except OSError:
            closed_after = time.monotonic() - t0
            break
        ready, _, _ = select.select([sock], [], [], 0.3)
        if ready and sock.recv(1024) == b"":
            closed_after = time.monotonic() - t0
            break
    sock.close()
    assert closed_after is not None, "a trickling connection outlived the deadline"
    assert SHORT.deadline <= closed_after < SHORT.deadline + 2.5
    assert get(server.port) == b"ok 0\n"


def test_idle_and_half_sent_requests_time_out_while_others_are_served(server: httpserve.Server) -> None:
    idle = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
    t0 = time.monotonic()
    assert get(server.port, timeout=0.5) == b"ok 0\n"
    assert time.monotonic() - t0 < 0.5
    for sock in (idle, half):
        data, _ = read_until_closed(sock, within=5)
        assert data == b"", "closed without an answer: the request never arrived"
        assert SHORT.read_timeout <= time.monotonic() - t0 < SHORT.read_timeout + 2.5
        sock.close()


def test_oversize_body_and_headers_are_refused_unread(server: httpserve.Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 100)
    data, after = read_until_closed(sock, within=5)
    assert data.split(b" ")[1] == b"413", data[:200]
    assert after < SHORT.read_timeout, "answered at once, without waiting for the announced body"
    sock.close()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 8192 + b"\r\n\r\n")
    data, _ = read_until_closed(sock, within=5)
    assert data.split(b" ")[1] == b"431", data[:200]
    sock.close()
    assert get(server.port) == b"ok 0\n"


def test_connections_beyond_the_limit_wait_and_cost_no_threads(server: httpserve.Server) -> None:
    before = threading.active_count()
    flood = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(SHORT.max_connections + 20)]
    time.sleep(0.3)
    assert threading.active_count() == before, "an idle connection must not hold a thread"
    for s in flood:
        s.close()
    assert get(server.port, timeout=3) == b"ok 0\n"


def test_stop_closes_the_listener_and_every_connection() -> None:
    before = {t.ident for t in threading.enumerate()}
    s = httpserve.serve(name="test", addr="127.0.0.1:0", app=hello, limits=SHORT)
    assert get(s.port) == b"ok 0\n"
    idle = socket.create_connection(("127.0.0.1", s.port))
    time.sleep(0.2)
    s.stop()
    data, after = read_until_closed(idle, within=2)
    assert (data, after < 1) == (b"", True), "stop() closes open connections at once"
    idle.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1)
    leaked = [t.name for t in threading.enumerate() if t.ident not in before]
    assert leaked == []


def test_split_addr() -> None:
    assert httpserve.split_addr(":8080") == ("0.0.0.0", 8080)  # noqa: S104
    assert httpserve.split_addr("127.0.0.1:0") == ("127.0.0.1", 0)


def test_a_body_of_exactly_the_limit_is_served(server: httpserve.Server) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/", data=b"x" * SHORT.max_body)
    with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - loopback
        assert r.read() == b"ok %d\n" % SHORT.max_body
