"""The controller's HTTP listeners: Prometheus metrics, health probes and the push webhook.

Each listener has its own limits (docs/controller.md, "HTTP listeners"), so a flood on one
cannot starve another: the kubelet's probe still gets in while the webhook is busy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import make_wsgi_app

from reconciler.report import httpserve
from reconciler.report.metrics import Metrics
from reconciler.source import webhook

# What one client may cost each listener.  Probes and scrapes are GETs without a body; 256
# health connections leave room for a flood of idle ones while the kubelet's probe still gets
# in.  The webhook keeps its 5 MiB body limit, and a deadline long enough for that body over a
# slow link.
HEALTH_LIMITS = httpserve.ListenerLimits(read_timeout=5, deadline=15, max_body=0, max_connections=256, threads=2)
METRICS_LIMITS = httpserve.ListenerLimits(read_timeout=5, deadline=15, max_body=0, max_connections=64, threads=2)
WEBHOOK_LIMITS = httpserve.ListenerLimits(
    read_timeout=5, deadline=30, max_body=webhook.MAX_BODY, max_connections=64, threads=4
)


def health_app(ready: Callable[[], bool]) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """``/healthz`` (the process answers) and ``/readyz`` (``ready()``: the watch has listed, or this
    replica is a standby, which is ready to take over and must not be restarted for waiting)."""

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok = True
        elif path == "/readyz":
            ok = ready()
        else:
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"ok\n" if ok else b"not ready\n"]

    return app


def start(
    *,
    metrics: Metrics,
    metrics_addr: str,
    health_addr: str,
    ready: Callable[[], bool],
    webhook_addr: str,
    webhook_secret: bytes,
    on_push: Callable[[webhook.Push], int],
) -> list[httpserve.Server]:
    """Start the listeners whose address is set ('' = off); the caller stops them."""
    servers = []
    if metrics_addr:
        app = make_wsgi_app(metrics.registry)
        servers.append(httpserve.serve(name="metrics", addr=metrics_addr, app=app, limits=METRICS_LIMITS))
    if health_addr:
        servers.append(httpserve.serve(name="health", addr=health_addr, app=health_app(ready), limits=HEALTH_LIMITS))
    if webhook_addr:
        receiver = webhook.Receiver(
            webhook_secret,
            on_push,
            count=lambda provider, result: metrics.webhook_requests.labels(provider, result).inc(),
        )
        servers.append(httpserve.serve(name="webhook", addr=webhook_addr, app=receiver, limits=WEBHOOK_LIMITS))
    return servers
