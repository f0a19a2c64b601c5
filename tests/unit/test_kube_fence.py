"""Kube.fenced(): a write for a shard must be over before the shard claim lapses.

Against a tiny local server behind tests/faultproxy.py, so the client under test is the real
urllib3 path: a request held on the wire is cut at the fence (and, its client gone, never
delivered), a request after the fence is not sent, and nothing is retried past it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faultproxy import Fault, FaultProxy, Rule

from reconciler.kube.client import FenceError, Kube, UnreachableError, connect_token


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str] = []  # noqa: RUF012 - one server per module

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Handler.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture(scope="module")
def proxy() -> Iterator[FaultProxy]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(upstream=f"http://127.0.0.1:{server.server_address[1]}") as p:
        yield p
    server.shutdown()


@pytest.fixture
def kube(proxy: FaultProxy) -> Kube:
    proxy.clear()
    Handler.seen.clear()
    return connect_token(proxy.url, "token")


def test_a_request_held_on_the_wire_is_cut_at_the_fence_and_never_delivered(kube: Kube, proxy: FaultProxy) -> None:
    proxy.add(Rule(method="PUT", path="/held", fault=Fault.HANG))
    fence = time.monotonic() + 0.5
    t = time.monotonic()
    with pytest.raises(FenceError):
        kube.fenced(lambda: fence).request("PUT", "/api/v1/held", body={}, timeout=(10.0, 60.0))
    assert 0.4 < time.monotonic() - t < 3, "cut at the fence, not at the 60 s read timeout"
    proxy.release()
    time.sleep(0.3)
    assert Handler.seen == [], "its client gone, the held write never reached the server"
    assert len(proxy.exchanges(path="/held")) == 1, "not retried"


def test_after_the_fence_nothing_is_sent(kube: Kube, proxy: FaultProxy) -> None:
    lapsed = kube.fenced(lambda: time.monotonic() - 0.01)
    with pytest.raises(FenceError):
        lapsed.request("PUT", "/api/v1/late", body={})
    assert proxy.exchanges(path="/late") == []
    assert isinstance(FenceError("x"), UnreachableError), "callers that handle an unreachable server handle it"


def test_a_live_fence_follows_renewals_and_shares_the_handle(kube: Kube, proxy: FaultProxy) -> None:
    claim = [time.monotonic() + 5]
    fenced = kube.fenced(lambda: claim[0])
    fenced.request("PUT", "/api/v1/a", body={})
    claim[0] = time.monotonic() - 1  # the claim lapsed (no renewal)
    with pytest.raises(FenceError):
        fenced.request("PUT", "/api/v1/b", body={})
    claim[0] = time.monotonic() + 5  # renewed
    fenced.request("PUT", "/api/v1/c", body={})
    kube.request("PUT", "/api/v1/d", body={})  # the original handle has no fence
    assert Handler.seen == ["/api/v1/a", "/api/v1/c", "/api/v1/d"]
    assert kube.requests["PUT"] == 3, "one pool, one count of the traffic"
