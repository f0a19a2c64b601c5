"""One call that turns a chart reference into a chart directory on disk, whatever its origin.

The three origins (a path in the fetched source, an HTTP(S) repository, an OCI registry) each
answer with a :class:`ChartArtifact`: the unpacked chart, the version a range resolved to, and
the digest that pins it.  Downloads go through the :class:`ChartCache` keyed by (source, name,
version, digest), so a no-op reconcile costs the index or manifest check and no download.  A
chart from the source is read in place (it is already on disk, in the fetched revision); its
digest is a hash of its files.

One client per (URL, credentials, CA, provider, plain HTTP) is kept, so connection pools and
registry tokens survive between reconciles; the table is bounded like the caches are.  With
``recheck_after`` (``spec.helm.interval``, Flux's HelmRepository interval), a chart resolved less
than that long ago is reused without a request: a no-op reconcile then costs no network at all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.source.charts import archive
from reconciler.source.charts.cache import ChartCache
from reconciler.source.charts.local import chart_from_tree
from reconciler.source.charts.model import ChartArtifact
from reconciler.source.charts.oci import OCIRegistry, default_ecr_client
from reconciler.source.charts.repository import HelmRepository
from reconciler.source.charts.transport import Credentials

MAX_CLIENTS = 64


@dataclass(frozen=True)
class ChartRequest:
    """What to resolve; credentials and CA come already read from their Secrets (never printed)."""

    chart: str  # the chart name, or its path in the source when ``url`` is None
    version: str = "*"  # exact or a Helm range; default "*" (ignored for a chart in the source)
    url: str | None = None  # http(s):// repository or oci:// registry path; default None: the source
    credentials: Credentials | None = field(default=None, repr=False)  # default anonymous
    ca_pem: str | None = field(default=None, repr=False)  # PEM bundle; default the system's CAs
    provider: Literal["generic", "aws"] = "generic"  # default generic; aws: ECR token via boto3
    plain_http: bool = False  # OCI only: talk HTTP to the registry; default false
    recheck_after: float = 0.0  # seconds a resolved chart is reused without asking the server; default 0 (always ask)

    def oci_url(self) -> str:
        """The full ``oci://host/path/chart`` (Flux's convention: the chart name goes after the URL)."""
        return f"{(self.url or '').rstrip('/')}/{self.chart}"


class ChartResolver:
    """Resolves :class:`ChartRequest` s through one chart cache; counts the requests it sent."""

    def __init__(
        self,
        *,
        cache: ChartCache | None = None,
        limits: archive.ArchiveLimits | None = None,
        ecr_client_factory: Callable[[str], Any] = default_ecr_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache or ChartCache()
        self.limits = limits or archive.ArchiveLimits()
        self.ecr_client_factory = ecr_client_factory
        self._clients: OrderedDict[tuple[object, ...], HelmRepository | OCIRegistry] = OrderedDict()
        self._retired_requests = 0
        self._resolved: OrderedDict[ChartRequest, tuple[float, ChartArtifact]] = OrderedDict()
        self.clock = clock

    @property
    def requests(self) -> int:
        """HTTP requests sent so far by every client (for tests and the benchmark)."""
        live = sum(c.transport.requests for c in self._clients.values())
        return live + self._retired_requests

    def resolve(self, request: ChartRequest, *, root: Path) -> ChartArtifact:
        """The chart ``request`` names; ``root`` is the fetched source (for a chart in the source)."""
        if request.url is None:
            return chart_from_tree(root, request.chart, limits=self.limits)
        remembered = self._resolved.get(request)
        now = self.clock()
        if remembered and now - remembered[0] < request.recheck_after and remembered[1].path.is_dir():
            return remembered[1]
        client = self._client(request)
        if isinstance(client, OCIRegistry):
            artifact = client.fetch(request.oci_url(), request.version)
        else:
            artifact = client.fetch(request.chart, request.version)
        self._resolved[request] = (now, artifact)
        self._resolved.move_to_end(request)
        while len(self._resolved) > MAX_CLIENTS * 4:
            self._resolved.popitem(last=False)
        return artifact

    def _client(self, request: ChartRequest) -> HelmRepository | OCIRegistry:
        key = (request.url, request.credentials, request.ca_pem, request.provider, request.plain_http)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = self._new_client(request)
        self._clients[key] = client
        if len(self._clients) > MAX_CLIENTS:
            _, old = self._clients.popitem(last=False)
            self._retired_requests += old.transport.requests
        return client

    def _new_client(self, request: ChartRequest) -> HelmRepository | OCIRegistry:
        url = request.url or ""
        if url.startswith("oci://"):
            return OCIRegistry(
                credentials=request.credentials,
                provider=request.provider,
                ca_pem=request.ca_pem,
                plain_http=request.plain_http,
                cache=self.cache,
                limits=self.limits,
                ecr_client_factory=self.ecr_client_factory,
            )
        return HelmRepository(
            url, credentials=request.credentials, ca_pem=request.ca_pem, cache=self.cache, limits=self.limits
        )
