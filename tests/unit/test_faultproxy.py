"""tests/faultproxy.py against a tiny local HTTP server: each fault does what it says, and the
record shows what reached the upstream. The proxy is test infrastructure other tests trust, so
its faults must be real (a client sees a reset, a hang, a short stream) and its record exact."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faultproxy import Exchange, Fault, FaultProxy, Rule

LINES = 20  # lines of the /stream answer, one every STEP seconds
STEP = 0.05


class Upstream(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[str]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append(f"GET {self.path}")
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(LINES):
                line = json.dumps({"type": "ADDED", "i": i}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(STEP)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._send(b"x" * 10000 if self.path.startswith("/big") else b"hello")

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append(f"PATCH {self.path}")
        self._send(body)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream(("127.0.0.1", 0), Handler)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=f"http://127.0.0.1:{upstream.server_address[1]}") as p:
        yield p


def _get(
    proxy: FaultProxy, path: str, *, method: str = "GET", body: bytes | None = None, timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_forwards_and_records_every_request(proxy: FaultProxy, upstream: Upstream) -> None:
    assert _get(proxy, "/api/v1/x?limit=5")[::2] == (200, b"hello")
    assert _get(proxy, "/api/v1/y", method="PATCH", body=b'{"a":1}')[::2] == (200, b'{"a":1}')
    # The handler stamps `end` as it returns, which can be just after the client has read the
    # whole response: wait for both stamps rather than race them.
    deadline = time.monotonic() + 5
    while any(e.end == 0.0 for e in proxy.exchanges()) and time.monotonic() < deadline:
        time.sleep(0.01)
    first, second = proxy.exchanges()
    assert (first.method, first.path, first.query, first.status, first.forwarded) == (
        "GET",
        "/api/v1/x",
        "limit=5",
        200,
        True,
    )
    assert first.start <= first.end <= second.start <= second.end
    assert [e.path for e in proxy.exchanges(method="PATCH")] == ["/api/v1/y"]
    assert "PATCH /api/v1/y" in upstream.seen


def test_status_with_retry_after_for_a_limited_number_of_times(proxy: FaultProxy, upstream: Upstream) -> None:
    rule = proxy.add(Rule(method="GET", path="^/busy", fault=Fault.STATUS, status=429, retry_after=2, times=2))
    before = len(upstream.seen)
    for _ in range(2):
        status, headers, body = _get(proxy, "/busy")
        assert (status, headers["Retry-After"], json.loads(body)["reason"]) == (429, "2", "TooManyRequests")
    assert len(upstream.seen) == before, "an injected answer never reaches the upstream"
    assert _get(proxy, "/busy")[0] == 200, "the rule is spent after `times`"
    assert rule.hits == 2
    assert [e.status for e in proxy.exchanges()] == [429, 429, 200]


def test_latency_is_added(proxy: FaultProxy) -> None:
    proxy.add(Rule(path="^/slow", delay=0.4))
    t = time.monotonic()
    _get(proxy, "/slow")
    assert time.monotonic() - t >= 0.4
    t = time.monotonic()
    _get(proxy, "/fast")
    assert time.monotonic() - t < 0.4


def test_reset_mid_body(proxy: FaultProxy) -> None:
    proxy.add(Rule(path="^/big", fault=Fault.RESET, after_bytes=100))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", "/big")
    resp = conn.getresponse()
    assert resp.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        resp.read()
    assert proxy.exchanges()[0].forwarded


def test_hang_until_released(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.add(Rule(path="^/held", fault=Fault.HANG))
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(_get(proxy, "/held")[0]))
    thread.start()
    time.sleep(0.3)
    assert not out, "still held"
    assert "GET /held" not in upstream.seen, "a held request is not sent"
    proxy.release()
    thread.join(5)
    assert out == [200]


def _lines(proxy: FaultProxy, path: str, timeout: float = 5) -> list[dict[str, object]]:
    return [json.loads(x) for x in _get(proxy, path, timeout=timeout)[2].splitlines()]


def test_a_stream_is_relayed_as_it_comes_and_can_end_early(proxy: FaultProxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", "/stream")
    first = conn.getresponse().readline()
    assert json.loads(first)["i"] == 0, "the first event arrives before the stream ends"
    conn.close()
    proxy.add(Rule(path="^/stream", fault=Fault.END, after=STEP * LINES / 4, times=1))
    events = _lines(proxy, "/stream?watch=true")
    assert 0 < len(events) < LINES, "ended early, cleanly (no error reading it)"
    assert len(_lines(proxy, "/stream")) == LINES


def test_gone_answers_like_the_api_server(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.add(Rule(path="^/stream", fault=Fault.GONE))
    status, _, body = _get(proxy, "/stream?watch=1&resourceVersion=5")
    event = json.loads(body)
    assert (status, event["type"], event["object"]["code"]) == (200, "ERROR", 410)
    status, _, body = _get(proxy, "/stream?resourceVersion=5")
    assert (status, json.loads(body)["reason"]) == (410, "Expired")
    assert not [s for s in upstream.seen if "resourceVersion" in s]


def test_partition_blackholes_new_requests_and_streams_in_flight(proxy: FaultProxy, upstream: Upstream) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=1)
    conn.request("GET", "/stream")
    resp = conn.getresponse()
    resp.readline()
    proxy.partition()
    before = len(upstream.seen)
    with pytest.raises(TimeoutError):
        _get(proxy, "/cut", timeout=0.5)
    with pytest.raises((TimeoutError, http.client.IncompleteRead)):
        resp.read()  # the stream stops delivering
    assert len(upstream.seen) == before, "nothing reached the upstream"
    cut = proxy.exchanges(path="^/cut")[0]
    assert (cut.fault, cut.forwarded, cut.status) == ("blackhole", False, 0)
    proxy.heal()
    assert _get(proxy, "/after")[0] == 200


def test_refuse_closes_connections(proxy: FaultProxy) -> None:
    proxy.partition(Fault.REFUSE)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        _get(proxy, "/x")
    proxy.heal()
    assert _get(proxy, "/x")[0] == 200


def test_hooks_see_the_nth_match(proxy: FaultProxy) -> None:
    calls: list[tuple[str, int, int]] = []

    def hook(ex: Exchange) -> None:
        calls.append((ex.path, ex.n, ex.status))

    proxy.add(
        Rule(method="PATCH", path="^/apply/", on_request=lambda ex: calls.append(("req", ex.n, 0)), on_response=hook)
    )
    for i in range(3):
        _get(proxy, f"/apply/{i}", method="PATCH", body=b"{}")
    _get(proxy, "/other")
    assert calls == [
        ("req", 1, 0),
        ("/apply/0", 1, 200),
        ("req", 2, 0),
        ("/apply/1", 2, 200),
        ("req", 3, 0),
        ("/apply/2", 3, 200),
    ]


def test_kubeconfig_points_at_the_proxy(proxy: FaultProxy, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    cfg = json.loads(proxy.kubeconfig(tmp_path / "kubeconfig").read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{proxy.port}"


def test_a_delaying_partition_delivers_late_what_clients_still_wait_for(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.partition(Fault.HANG)
    with pytest.raises(TimeoutError):
        _get(proxy, "/given-up", timeout=0.3)  # its client gives up: never delivered
    out: list[int] = []
    thread = threading.Thread(target=lambda: out.append(_get(proxy, "/late")[0]))
    thread.start()
    time.sleep(0.3)
    assert not [s for s in upstream.seen if "/late" in s or "/given-up" in s]
    proxy.heal()
    thread.join(5)
    assert out == [200]
    assert "GET /late" in upstream.seen
    assert "GET /given-up" not in upstream.seen
