"""The API client honours 429 Retry-After and its own QPS bound, against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.kube import client


class Throttling(ThreadingHTTPServer):
    """Answers the first ``rejects`` requests with 429 (Retry-After ``retry_after``), then 200."""

    def __init__(self, *, rejects: int, retry_after: str | None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.rejects, self.retry_after = rejects, retry_after
        self.seen: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Throttling

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.seen.append((time.monotonic(), self.command, body))
            reject = self.server.rejects > 0
            self.server.rejects -= 1
        if reject:
            status = {"kind": "Status", "reason": "TooManyRequests", "message": "too many requests, please try again"}
            data = json.dumps(status).encode()
            self.send_response(429)
            if self.server.retry_after is not None:
                self.send_header("Retry-After", self.server.retry_after)
        else:
            data = json.dumps({"kind": "ConfigMap", "metadata": {"name": "x"}}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def serve() -> Iterator[list[Throttling]]:
    started: list[Throttling] = []
    yield started
    for srv in started:
        srv.shutdown()
        srv.server_close()


def _kube(srv: Throttling, started: list[Throttling]) -> client.Kube:
    started.append(srv)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return client.connect_token(f"http://127.0.0.1:{srv.server_address[1]}", "token")


def test_a_throttled_request_is_sent_again_after_retry_after(serve: list[Throttling]) -> None:
    srv = Throttling(rejects=2, retry_after="1")
    kube = _kube(srv, serve)
    got = kube.request("PATCH", "/api/v1/namespaces/default/configmaps/x", body={"data": {"a": "b"}})
    assert got["metadata"]["name"] == "x"
    assert [verb for _, verb, _ in srv.seen] == ["PATCH"] * 3, "a 429 is not processed: the same PATCH again"
    assert all(body == b'{"data":{"a":"b"}}' for _, _, body in srv.seen)
    gaps = [b[0] - a[0] for a, b in zip(srv.seen, srv.seen[1:], strict=False)]
    assert all(g >= 0.95 for g in gaps), f"waited Retry-After (1s) each time: {gaps}"
    assert kube.throttled == 2


def test_throttling_past_the_retries_is_the_servers_error(serve: list[Throttling]) -> None:
    srv = Throttling(rejects=100, retry_after="0")
    kube = _kube(srv, serve)
    with pytest.raises(client.KubeError) as e:
        kube.get("/api/v1/namespaces/default/configmaps/x")
    assert e.value.status == 429
    assert e.value.reason == "TooManyRequests"
    assert len(srv.seen) == client.THROTTLE_RETRIES + 1


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, 1.0), ("3", 3.0), ("0", 0.0), ("soon", 1.0), ("3600", client.MAX_RETRY_AFTER)]
)
def test_retry_after_values(header: str | None, seconds: float) -> None:
    assert client.retry_after(header) == seconds


def test_the_qps_bound_spaces_requests_after_the_burst(serve: list[Throttling]) -> None:
    srv = Throttling(rejects=0, retry_after=None)
    kube = _kube(srv, serve)
    kube.limit(qps=20, burst=5)
    t0 = time.monotonic()
    for _ in range(15):
        kube.get("/api/v1/namespaces/default/configmaps/x")
    took = time.monotonic() - t0
    assert took >= 0.45, f"5 at once, then 10 at 20/s take at least 0.5s (took {took:.2f}s)"
    assert len(srv.seen) == 15


def test_rate_limiter_refills_at_qps() -> None:
    now = [0.0]
    rl = client.RateLimiter(qps=10, burst=2, clock=lambda: now[0])
    assert [rl.reserve() for _ in range(2)] == [0.0, 0.0]
    assert rl.reserve() == pytest.approx(0.1)
    now[0] += 1.0  # a second later the bucket is full again (2), not 10
    assert rl.reserve() == 0.0
    assert rl.reserve() == 0.0
    assert rl.reserve() > 0
