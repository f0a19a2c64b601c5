"""The controller's chart render: what ``spec.helm`` needs from the cluster, then :func:`render_helm`.

:mod:`reconciler.gitsync.helmrender` never talks to the API server, so the controller reads for it:
the ConfigMaps and Secrets the spec names (``valuesFrom``, repository ``secretRef`` and
``certSecretRef``), through the GitSync's own identity as ``substituteFrom`` is, so RBAC decides
what a tenant's chart may read; and the API server's version and API versions (discovery) of the
cluster the chart goes into, so ``.Capabilities`` checks render as that cluster would.

:class:`Charts` is kept by the controller and shared by every GitSync: one chart cache (a chart
four GitSyncs use is downloaded once), one render cache (a no-op reconcile runs no ``helm``), and
the discovery answers per target cluster. A lock serialises resolve and render: the caches are
not thread-safe, and a render that many workers ask for at once then runs once.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.gitsync.helmrender import HelmInputs, HelmRender, ObjectData, render_helm
from reconciler.gitsync.helmspec import HelmSpec
from reconciler.gitsync.spec import GitSyncSpec, SpecError
from reconciler.kube import paths
from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper
from reconciler.render.helm_cache import RenderCache
from reconciler.report.metrics import Metrics
from reconciler.source.charts import ChartCache
from reconciler.source.charts.resolver import ChartResolver

CAPABILITIES_TTL = 600.0  # seconds discovery answers are reused: a cluster upgrade shows within 10 minutes


@dataclass(frozen=True)
class Capabilities:
    """What Helm's ``.Capabilities`` says of the cluster: its version and its API versions."""

    kube_version: str | None  # "v1.35.4"; None: Helm's built-in default
    api_versions: tuple[str, ...]  # "group/version" and "group/version/Kind", sorted
    read_at: float  # monotonic time of the discovery


@dataclass(frozen=True)
class ChartTarget:
    """One GitSync's chart render: whose it is, which cluster it is rendered for."""

    namespace: str  # the GitSync's namespace (metric labels)
    name: str  # the GitSync's name (metric labels)
    release_namespace: str  # the release namespace (the sync's default namespace)
    kube: Kube  # the target cluster (discovery)
    mapper: RestMapper  # the target cluster's discovery


@dataclass
class Charts:
    """The chart and render caches and the discovery answers, shared by all GitSyncs of a controller."""

    resolver: ChartResolver
    renders: RenderCache
    _capabilities: weakref.WeakKeyDictionary[RestMapper, Capabilities] = field(
        default_factory=weakref.WeakKeyDictionary
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def under(cls, cache_dir: Path) -> Charts:
        """Caches for a controller whose cache directory is ``cache_dir``: charts under ``.charts/``,
        a name no namespace can have (sources are cached under ``<namespace>/<name>/``)."""
        return cls(resolver=ChartResolver(cache=ChartCache(cache_dir / ".charts")), renders=RenderCache())

    def capabilities(self, kube: Kube, mapper: RestMapper) -> Capabilities:
        """The cluster's version and API versions, from discovery, cached per client."""
        known = self._capabilities.get(mapper)
        if known is not None and time.monotonic() - known.read_at < CAPABILITIES_TTL:
            return known
        version = kube.get("/version").get("gitVersion")
        apis: set[str] = set()
        for res in mapper.resources():
            apis |= {res.api_version, f"{res.api_version}/{res.kind}"}
        known = Capabilities(
            kube_version=str(version) if version else None, api_versions=tuple(sorted(apis)), read_at=time.monotonic()
        )
        self._capabilities[mapper] = known
        return known

    def render(
        self, root: Path, spec: HelmSpec, *, objects: ObjectData, target: ChartTarget, metrics: Metrics
    ) -> HelmRender:
        """Resolve and render the chart of ``spec`` (cached); ``objects``: what :func:`read_objects` read."""
        caps = self.capabilities(target.kube, target.mapper)
        inputs = HelmInputs(
            root=root,
            spec=spec,
            namespace=target.release_namespace,
            objects=objects,
            kube_version=caps.kube_version,
            api_versions=caps.api_versions,
        )
        labels = (target.namespace, target.name)
        t0 = time.monotonic()
        with self._lock:
            sent = self.resolver.requests
            try:
                out = render_helm(inputs, resolver=self.resolver, cache=self.renders)
            finally:
                metrics.chart_requests.labels(*labels).inc(self.resolver.requests - sent)
        metrics.helm_render_duration.labels(*labels).observe(time.monotonic() - t0)
        metrics.helm_renders.labels(*labels, "hit" if out.cached else "miss").inc()
        return out


def default_namespace(spec: GitSyncSpec, namespace: str) -> str:
    """Where a sync puts namespaced objects that name none: for a chart, its release namespace
    (``spec.helm.targetNamespace``), else ``spec.targetNamespace``, else the GitSync's own."""
    chart_ns = spec.helm.target_namespace if spec.helm is not None else None
    return chart_ns or spec.target_namespace or namespace


def read_objects(kube: Kube, namespace: str, spec: HelmSpec) -> ObjectData:
    """The ConfigMaps and Secrets ``spec`` names, as (kind, name) -> data; Secret data decoded.

    One that is missing is left out: the render step says it is missing (or skips it when
    ``optional``), naming the chart and the field.
    """
    wanted: list[tuple[str, str]] = [("Secret", name) for name in spec.secret_names()]
    wanted += [(ref.kind, ref.name) for ref in spec.values_from if ref.kind == "ConfigMap"]
    out: dict[tuple[str, str], dict[str, str]] = {}
    for kind, name in dict.fromkeys(wanted):
        resource = "secrets" if kind == "Secret" else "configmaps"
        path = paths.api_path(group="", version="v1", resource=resource, namespace=namespace, name=name)
        obj = kube.get_or_none(path)
        if obj is None:
            continue
        data = obj.get("data") or {}
        out[(kind, name)] = _decoded(namespace, name, data) if kind == "Secret" else dict(data)
    return out


def _decoded(namespace: str, name: str, data: dict[str, str]) -> dict[str, str]:
    decoded = {}
    for key, value in data.items():
        try:
            decoded[key] = base64.b64decode(value).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise SpecError(f"spec.helm: Secret {namespace}/{name} key {key} is not UTF-8 text") from None
    return decoded


def secret_texts(objects: ObjectData) -> Iterable[str]:
    """Every value read from a Secret (to scrub from messages)."""
    for (kind, _), data in objects.items():
        if kind == "Secret":
            yield from data.values()
