"""A fault-injecting reverse proxy on 127.0.0.1, driven by the test request by request.

Why a proxy and not a fake: the code under test keeps its real HTTP client, TLS setup, retries
and watch decoding; only the wire between it and the real server misbehaves, the way networks and
overloaded API servers do. The proxy sits in front of the kube-apiserver (it connects upstream
with a client certificate and serves plain http or TLS to the client), the plain-http git server,
or moto.

A test adds :class:`Rule` s: method and path patterns (plus an optional predicate on the
request), a :class:`Fault`, an added latency, a limited number of ``times``, and hooks called at
each match (``on_request`` before anything is forwarded, ``on_response`` once the answer was
relayed) — e.g. to SIGKILL a controller at its Nth apply PATCH. :meth:`FaultProxy.partition`
black-holes (or refuses) everything, streams in flight included, until :meth:`FaultProxy.heal`.
Every request is recorded as an :class:`Exchange` (method, path, query, status, wall-clock start
and end, whether it reached the upstream), so tests can reason about who wrote what, when.

aiohttp (already installed by the kubernetes client) does the HTTP on both sides on one asyncio
loop in a daemon thread; responses are relayed chunk by chunk, so watches stream as they come.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection", "te", "trailer"}
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class Fault(StrEnum):
    """What the proxy does with a matching request."""

    PASS = "pass"  # forward unchanged (the rule's latency and hooks still apply)
    STATUS = "status"  # answer ``status`` with ``body`` (a kube Status when empty) and Retry-After
    RESET = "reset"  # forward, relay ``after_bytes`` of the response body, then reset the connection
    HANG = "hang"  # hold the request, unsent, until release(); then forward it
    END = "end"  # relay a (watch) response for ``after`` seconds, then end it cleanly
    GONE = "gone"  # 410: for a watch a 200 stream with one ERROR event, as kube-apiserver; else HTTP 410
    BLACKHOLE = "blackhole"  # read the request, never answer, never forward
    REFUSE = "refuse"  # close the connection without an answer


@dataclass
class Exchange:
    """One request as the proxy saw it. Times are wall clock (time.time()), comparable with a
    Lease's renewTime; ``status`` 0 means no status line reached the client."""

    method: str
    path: str
    query: str
    start: float
    n: int = 0  # this request's rank among the matches of its rule (1-based; 0: no rule)
    fault: str = ""  # the fault applied ("" when none matched)
    status: int = 0
    end: float = 0.0  # 0 while in flight
    forwarded: bool = False  # whether the request was sent to the upstream

    @property
    def watch(self) -> bool:
        return bool(re.search(r"(^|&)watch=(true|1)(&|$)", self.query))


Hook = Callable[[Exchange], None]


@dataclass
class Rule:
    """Which requests a fault applies to. The first live rule that matches wins."""

    method: str = ".*"  # regex, full match on the HTTP method
    path: str = ""  # regex, searched in the path (no query)
    fault: Fault = Fault.PASS
    when: Callable[[Exchange], bool] | None = None  # extra predicate on the request
    delay: float = 0.0  # seconds added before the fault (latency)
    status: int = 503  # for STATUS
    body: str = ""  # for STATUS; a kube Status JSON when empty
    message: str = ""  # for STATUS without ``body``: the kube Status message (default: "injected by faultproxy")
    content_type: str = ""  # for STATUS with ``body``: its Content-Type (default text/plain)
    retry_after: float | None = None  # for STATUS: the Retry-After header, seconds
    after_bytes: int = 0  # for RESET (and END, when ``after`` is 0): response bytes relayed first
    after: float = 0.0  # for END: seconds of the stream relayed before it ends
    times: int | None = None  # how many requests the rule applies to; None: every one
    on_request: Hook | None = None  # called (on the proxy's thread) at each match, before the fault
    on_response: Hook | None = None  # called once the answer was relayed (or the attempt ended)
    hits: int = 0  # how many requests the rule applied to so far

    def matches(self, ex: Exchange) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if not re.fullmatch(self.method, ex.method) or not re.search(self.path, ex.path):
            return False
        return self.when is None or self.when(ex)


def kube_status(code: int, message: str = "injected by faultproxy") -> dict[str, Any]:
    """The Status object kube-apiserver answers failures with."""
    reason = _REASONS.get(code, "InternalError")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class _State:
    rules: list[Rule] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    partitioned: Fault | None = None


class FaultProxy:
    """``with FaultProxy(upstream=...) as proxy:`` — a proxy on ``proxy.url`` until the block ends.

    ``upstream_ssl``: how to reach an https upstream (CA and client certificate); ``serve_ssl``:
    serve TLS to the client instead of plain http."""

    def __init__(
        self,
        *,
        upstream: str,
        upstream_ssl: ssl.SSLContext | None = None,
        serve_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._upstream_ssl, self._serve_ssl = upstream_ssl, serve_ssl
        self._state = _State()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._released = asyncio.Event()
        self._healed = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._transports: set[asyncio.Transport] = set()
        self.port = 0
        self.ca: Path | None = None  # the CA the client must trust when serve_ssl is set

    @classmethod
    def kube(cls, *, server: str, pki: Path, user: str = "admin", tls: bool = False) -> FaultProxy:
        """A proxy for the test control plane: upstream with ``user``'s client certificate from
        ``pki`` (scripts/controlplane.py's layout); to the client plain http, or TLS with the
        API server's own serving certificate when ``tls``."""
        up = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        up.load_cert_chain(pki / f"{user}.crt", pki / f"{user}.key")
        serve = None
        if tls:
            serve = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            serve.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        proxy = cls(upstream=server, upstream_ssl=up, serve_ssl=serve)
        proxy.ca = pki / "ca.crt" if tls else None
        return proxy

    # ------------------------------------------------------------------ the test's side

    @property
    def url(self) -> str:
        return f"{'https' if self._serve_ssl else 'http'}://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        """Add ``rule`` after the existing ones; returns it (its ``hits`` count live)."""
        with self._lock:
            self._state.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            self._state.rules.remove(rule)

    def clear(self) -> None:
        """Drop every rule (requests on hold stay held: see :meth:`release`)."""
        with self._lock:
            self._state.rules.clear()

    def partition(self, fault: Fault = Fault.BLACKHOLE) -> None:
        """Cut the client off: BLACKHOLE holds every request and stream in flight unanswered
        (lost: reset at :meth:`heal`), REFUSE closes each connection, HANG holds them and
        delivers them late, at :meth:`heal` (to clients still waiting). Nothing reaches the
        upstream meanwhile."""
        if fault not in (Fault.BLACKHOLE, Fault.REFUSE, Fault.HANG):
            raise ValueError("a partition is BLACKHOLE, REFUSE or HANG")

        def _cut() -> None:
            self._healed.clear()
            with self._lock:
                self._state.partitioned = fault
            if fault is Fault.REFUSE:
                self._abort_all()

        self._call(_cut)

    def heal(self) -> None:
        """End the partition; the connections it black-holed are reset (their packets were lost)."""

        def _mend() -> None:
            with self._lock:
                self._state.partitioned = None
            self._healed.set()

        self._call(_mend)

    def release(self) -> None:
        """Let every request held by a HANG rule go on to the upstream."""

        def _go() -> None:
            self._released.set()
            self._released = asyncio.Event()

        self._call(_go)

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the proxy's loop and wait for it (its asyncio objects live there)."""

        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def exchanges(self, *, method: str = ".*", path: str = "") -> list[Exchange]:
        """The requests recorded so far (copies' list), optionally filtered like a Rule."""
        with self._lock:
            seen = list(self._state.exchanges)
        return [e for e in seen if re.fullmatch(method, e.method) and re.search(path, e.path)]

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing at the proxy (the proxy holds the credentials upstream)."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca is not None:
            cluster["certificate-authority"] = str(self.ca)
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": cluster}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        path.chmod(0o600)
        return path

    # ------------------------------------------------------------------ life

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ssl=self._upstream_ssl or False)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._serve_ssl)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = int(server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self._released.set()
        self._healed.set()
        self._abort_all()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _abort_all(self) -> None:
        for t in list(self._transports):
            t.abort()
        self._transports.clear()

    # ------------------------------------------------------------------ the proxy's side

    def _match(self, ex: Exchange) -> Rule | None:
        with self._lock:
            self._state.exchanges.append(ex)
            if self._state.partitioned is not None:
                ex.fault = str(self._state.partitioned)
                return None
            for rule in self._state.rules:
                if rule.matches(ex):
                    rule.hits += 1
                    ex.n, ex.fault = rule.hits, str(rule.fault)
                    return rule
        return None

    def _cut(self) -> Fault | None:
        with self._lock:
            return self._state.partitioned

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ex = Exchange(method=request.method, path=request.path, query=request.query_string, start=time.time())
        transport = request.transport
        if transport is not None:
            self._transports.add(transport)
        rule = self._match(ex)
        try:
            return await self._serve(request, ex, rule)
        finally:
            ex.end = time.time()
            if rule is not None and rule.on_response is not None:
                rule.on_response(ex)
            if transport is not None:
                self._transports.discard(transport)

    async def _serve(self, request: web.Request, ex: Exchange, rule: Rule | None) -> web.StreamResponse:
        body = await request.read()
        if rule is not None:
            if rule.on_request is not None:
                rule.on_request(ex)
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.fault is Fault.HANG:
                await self._released.wait()
        fault = rule.fault if rule is not None else Fault.PASS
        if ex.fault == Fault.HANG and rule is None:  # a partition that delays: delivered at heal()
            await self._healed.wait()
        elif ex.fault in (Fault.BLACKHOLE, Fault.REFUSE) and rule is None:
            fault = Fault(ex.fault)
        if fault in (Fault.BLACKHOLE, Fault.REFUSE):
            return await self._drop(request, fault)
        if fault is Fault.STATUS:
            assert rule is not None
            return self._status(ex, rule)
        if fault is Fault.GONE:
            return await self._gone(request, ex)
        return await self._forward(request, ex, body=body, rule=rule)

    async def _drop(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault is Fault.BLACKHOLE:
            await self._healed.wait()
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("dropped by faultproxy")

    def _status(self, ex: Exchange, rule: Rule) -> web.Response:
        text = rule.body or json.dumps(kube_status(rule.status, *([rule.message] if rule.message else [])))
        headers = {"Content-Type": "application/json" if not rule.body else (rule.content_type or "text/plain")}
        if rule.retry_after is not None:
            headers["Retry-After"] = f"{rule.retry_after:g}"
        ex.status = rule.status
        return web.Response(status=rule.status, text=text, headers=headers)

    async def _gone(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        gone = kube_status(410, "too old resource version: injected by faultproxy")
        if not ex.watch:
            ex.status = 410
            return web.json_response(gone, status=410)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        ex.status = 200  # before the client can have read it all
        await resp.prepare(request)
        await resp.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
        await resp.write_eof()
        return resp

    async def _forward(
        self, request: web.Request, ex: Exchange, *, body: bytes, rule: Rule | None
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP and k.lower() != "content-length"}
        url = self.upstream + request.rel_url.raw_path_qs
        ex.forwarded = True
        async with self._session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for k, v in up.headers.items():
                if k.lower() not in _HOP and k.lower() != "content-length":
                    resp.headers.add(k, v)
            if up.content_length is not None and (rule is None or rule.fault is Fault.PASS):
                resp.content_length = up.content_length
            else:
                resp.enable_chunked_encoding()
            await self._gate(request)
            ex.status = up.status  # before the client can have read it all
            await resp.prepare(request)
            await self._relay(request, up, resp, rule)
        return resp

    async def _gate(self, request: web.Request) -> None:
        """Hold a response while the proxy is partitioned: a cut wire delivers nothing."""
        cut = self._cut()
        if cut is Fault.HANG:
            await self._healed.wait()
        elif cut is not None:
            await self._drop(request, cut)

    async def _relay(
        self, request: web.Request, up: aiohttp.ClientResponse, resp: web.StreamResponse, rule: Rule | None
    ) -> None:
        fault = rule.fault if rule is not None else Fault.PASS
        limit = rule.after_bytes if rule is not None and fault in (Fault.RESET, Fault.END) else -1
        until = time.monotonic() + rule.after if rule is not None and fault is Fault.END and rule.after else None
        sent = 0
        chunks = up.content.iter_any().__aiter__()
        while True:
            try:
                wait = None if until is None else max(0.0, until - time.monotonic())
                chunk = await asyncio.wait_for(chunks.__anext__(), wait)
            except (StopAsyncIteration, TimeoutError):
                break
            await self._gate(request)
            if limit >= 0 and sent + len(chunk) >= limit and (until is None or fault is Fault.RESET):
                await resp.write(chunk[: limit - sent])
                if fault is Fault.RESET:
                    await self._drop(request, Fault.REFUSE)
                break
            await resp.write(chunk)
            sent += len(chunk)
        await resp.write_eof()
