"""The controller's HTTP listeners (/metrics, /healthz and /readyz, the push webhook),
built so that no client can stall them.

Why waitress rather than ``wsgiref`` or a hand-made ``ThreadingWSGIServer``: ``wsgiref``
serves one connection at a time with no socket timeout, so a single idle TCP connection
kept ``/healthz`` from answering until the kubelet restarted the Pod, and a webhook that
announced 5 MiB and sent nothing held the receiver forever.  A thread per connection
with a socket timeout would fix the first, but then every idle or trickling connection
holds a thread until its timeout, and a few hundred of them are a few hundred threads.
waitress reads requests on one event loop (``poll``) and hands a request to its small,
fixed pool of threads only once the request line, headers AND body are complete: a
connection that hangs costs a socket and a few kilobytes, never a thread, so health stays
answerable while others hang.  It also refuses an oversize ``Content-Length`` (413) or
header block (431) before reading it, and caps the connections it accepts.  It is the
WSGI server the Pylons project keeps (pure Python, no C extension).

What waitress does not do by itself is bound a connection that trickles a byte every few
seconds (its ``channel_timeout`` counts from the last byte); :class:`_Listener` adds that
deadline.  The figures the controller uses are in ``reconciler/gitsync/loop.py`` and
``docs/controller.md``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from waitress import wasyncore
from waitress.server import TcpWSGIServer

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger("reconciler.http")


@dataclass(frozen=True, kw_only=True)
class ListenerLimits:
    """What one client may cost a listener.

    ``read_timeout``: seconds without a byte from the client (request line, headers or body)
    before the connection is closed; also closes idle keep-alive connections.
    ``deadline``: seconds a connection may live without a request being served, however
    slowly it trickles (a slowloris client resets ``read_timeout`` with every byte).
    ``max_body`` / ``max_header``: bytes; larger is answered 413 / 431 without reading it.
    ``max_connections``: open connections; beyond it new ones wait in the kernel's accept
    backlog until one closes (at worst after ``read_timeout``).  ``threads``: how many
    requests run the application at once.
    """

    read_timeout: int = 5  # seconds of silence before closing; default 5
    deadline: int = 15  # seconds a connection may live without being served; default 15
    max_body: int = 0  # bytes of request body; default 0 (no body: /metrics and health take none)
    max_header: int = 16 * 1024  # bytes of request line and headers; default 16 KiB
    max_connections: int = 128  # open connections at once; default 128
    threads: int = 2  # requests running the application at once; default 2


class _Listener(TcpWSGIServer):
    """waitress's TCP server plus the request deadline (see the module docstring)."""

    deadline: float = 15.0

    def maintenance(self, now: Any) -> None:
        super().maintenance(now)  # closes connections idle for longer than read_timeout
        cutoff = now - self.deadline
        channels = cast(dict[int, Any], self.active_channels)  # the stubs type it as one channel
        for channel in list(channels.values()):
            if not channel.requests and channel.creation_time < cutoff:
                channel.will_close = True


class Server:
    """One listener on its own event-loop thread; :meth:`stop` closes it and every connection."""

    def __init__(self, *, name: str, host: str, port: int, app: WSGIApplication, limits: ListenerLimits) -> None:
        self.name = name
        self._map: dict[int, Any] = {}
        self._server = _Listener(
            app,
            map=self._map,
            host=host,
            port=port,
            threads=limits.threads,
            connection_limit=limits.max_connections,
            channel_timeout=limits.read_timeout,
            cleanup_interval=1,  # check the timeouts every second, not every 30
            max_request_body_size=limits.max_body + 1,  # waitress refuses a Content-Length >= this
            max_request_header_size=limits.max_header,
            asyncore_use_poll=True,  # select() fails once any fd of the process is above 1023
            ident="gitops-reconciler",
        )
        self._server.deadline = float(limits.deadline)
        self._limits, self._host = limits, host
        self.port = int(self._server.effective_port)  # type: ignore[attr-defined]  # set by waitress, not in the stubs
        self._thread = threading.Thread(target=self._run, name=f"http-{name}-{self.port}", daemon=True)

    def start(self) -> Server:
        self._thread.start()
        lim = self._limits
        log.info(
            f"{self.name} listening on {self._host}:{self.port} (read timeout {lim.read_timeout}s, deadline "
            f"{lim.deadline}s, body {lim.max_body} bytes, {lim.max_connections} connections, {lim.threads} threads)"
        )
        return self

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:  # the loop must not die silently: the probe failing says the rest
            log.exception(f"{self.name} server on port {self.port} stopped unexpectedly")
        finally:
            self._server.task_dispatcher.shutdown(timeout=5)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listening socket and every open connection, then wait for the threads."""
        if not self._thread.is_alive():
            wasyncore.close_all(self._map, ignore_all=True)
            return
        # Closed from the loop's own thread (through its wake-up pipe): the loop owns the sockets.
        trigger = cast(Any, self._server.trigger)
        trigger.pull_trigger(lambda: wasyncore.close_all(self._map, ignore_all=True))
        self._thread.join(timeout)


def split_addr(addr: str) -> tuple[str, int]:
    """``":8080"`` -> ``("0.0.0.0", 8080)``; ``"127.0.0.1:0"`` picks a free port."""
    host, _, port = addr.rpartition(":")
    return host or "0.0.0.0", int(port)  # noqa: S104 - in a Pod, probes come from the node


def serve(*, name: str, addr: str, app: WSGIApplication, limits: ListenerLimits) -> Server:
    """Listen on ``addr`` (``[host]:port``) and serve ``app`` within ``limits``, in the background."""
    host, port = split_addr(addr)
    return Server(name=name, host=host, port=port, app=app, limits=limits).start()
