"""Discovery and REST mapping: which URL serves a given apiVersion/kind.

Uses aggregated discovery (``apidiscovery.k8s.io/v2``, GA since Kubernetes 1.30): two
requests describe every resource of the cluster, instead of one per group-version.
Older servers fall back to per-group-version discovery.  Either way a group that fails
(typically an aggregated APIService whose backend is down, such as a broken
metrics-server) is recorded in :attr:`RestMapper.failed` and does not abort discovery
of the others; only objects of that very group then fail to map.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from reconciler.kube import paths
from reconciler.kube.client import Kube, KubeError, UnreachableError

AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


@dataclass(frozen=True)
class Resource:
    """How to reach one kind over REST."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        """Raises :class:`paths.PathError` for a namespace that is not a valid path segment."""
        ns = namespace if self.namespaced and namespace else None
        return paths.api_path(group=self.group, version=self.version, resource=self.plural, namespace=ns)

    def object_path(self, name: str, namespace: str | None = None) -> str:
        """Raises :class:`paths.PathError` for a name that is not a valid path segment."""
        ns = namespace if self.namespaced and namespace else None
        return paths.api_path(group=self.group, version=self.version, resource=self.plural, namespace=ns, name=name)


class UnknownKindError(LookupError):
    """No resource serves this apiVersion/kind (yet): a missing CRD or a broken APIService."""

    def __init__(self, api_version: str, kind: str, why: str = "") -> None:
        self.api_version, self.kind, self.why = api_version, kind, why
        super().__init__(f"no resource serves kind {kind} in {api_version}" + (f" ({why})" if why else ""))


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class RestMapper:
    """Kind -> resource map, refreshed when an unknown kind is asked for.

    A refresh is at most once per ``min_refresh`` seconds, so a manifest full of a
    missing CRD's objects costs one discovery round, not one per object.
    """

    def __init__(self, kube: Kube, min_refresh: float = 2.0) -> None:
        self._kube = kube
        self._lock = threading.Lock()
        self._by_kind: dict[tuple[str, str, str], Resource] = {}
        self._loaded_at = float("-inf")
        self._min_refresh = min_refresh
        self.failed: dict[str, str] = {}  # "group/version" -> why its discovery failed

    def refresh(self) -> None:
        by_kind: dict[tuple[str, str, str], Resource] = {}
        failed: dict[str, str] = {}
        try:
            self._aggregated(by_kind, failed)
        except _NotAggregatedError:
            by_kind.clear()
            failed.clear()
            self._legacy(by_kind, failed)
        self._unavailable_apiservices(failed)
        with self._lock:
            self._by_kind, self.failed, self._loaded_at = by_kind, failed, time.monotonic()

    def resources(self) -> list[Resource]:
        with self._lock:
            need = self._loaded_at == float("-inf")
        if need:
            self.refresh()
        with self._lock:
            return list(self._by_kind.values())

    def find_group_kind(self, group: str, kind: str) -> Resource:
        """The server's preferred version of a kind: for objects known only by group and kind
        (inventory entries whose version may no longer be served)."""
        for res in self.resources():
            if res.group == group and res.kind == kind:
                return res  # discovery lists versions in preference order
        self.refresh()
        for res in self.resources():
            if res.group == group and res.kind == kind:
                return res
        with self._lock:  # a group whose APIService is down: say so, not just "unknown kind"
            why = next((w for gv, w in sorted(self.failed.items()) if split_api_version(gv)[0] == group), "")
        raise UnknownKindError(group or "core", kind, why)

    def find(self, api_version: str, kind: str) -> Resource:
        group, version = split_api_version(api_version)
        key = (group, version, kind)
        with self._lock:
            hit = self._by_kind.get(key)
            stale = time.monotonic() - self._loaded_at >= self._min_refresh
        if hit is not None:
            return hit
        if stale:
            self.refresh()
            with self._lock:
                hit = self._by_kind.get(key)
        if hit is not None:
            return hit
        raise UnknownKindError(api_version, kind, self.failed.get(api_version, ""))

    # -- aggregated discovery (one request for /api, one for /apis)
    def _aggregated(self, out: dict[tuple[str, str, str], Resource], failed: dict[str, str]) -> None:
        for root in ("/api", "/apis"):
            doc = self._kube.request("GET", root, accept=AGGREGATED)
            if not isinstance(doc, dict) or doc.get("kind") != "APIGroupDiscoveryList":
                raise _NotAggregatedError
            for grp in doc.get("items", []):
                gname = grp.get("metadata", {}).get("name", "")
                for ver in grp.get("versions", []):
                    vname = ver.get("version", "")
                    if ver.get("freshness") == "Stale":
                        failed[f"{gname}/{vname}" if gname else vname] = "discovery is stale: APIService unavailable"
                    for r in ver.get("resources", []):
                        rk = r.get("responseKind") or {}
                        kind = rk.get("kind")
                        if not kind:
                            continue
                        res = Resource(
                            group=gname,
                            version=vname,
                            kind=kind,
                            plural=r["resource"],
                            namespaced=r.get("scope") == "Namespaced",
                            verbs=frozenset(r.get("verbs", [])),
                        )
                        out.setdefault((gname, vname, kind), res)

    # -- per-group-version discovery for servers without aggregated discovery
    def _legacy(self, out: dict[tuple[str, str, str], Resource], failed: dict[str, str]) -> None:
        gvs = [f"v{v[1:]}" for v in self._kube.get("/api").get("versions", [])]
        versions = [(f"/api/{v}", "", v) for v in gvs]
        for grp in self._kube.get("/apis").get("groups", []):
            for ver in grp.get("versions", []):
                versions.append((f"/apis/{ver['groupVersion']}", grp["name"], ver["version"]))
        for path, gname, vname in versions:
            try:
                doc: dict[str, Any] = self._kube.get(path)
            except (KubeError, UnreachableError) as e:
                failed[f"{gname}/{vname}" if gname else vname] = str(e)
                continue
            for r in doc.get("resources", []):
                if "/" in r["name"]:
                    continue  # subresource
                res = Resource(
                    group=gname,
                    version=vname,
                    kind=r["kind"],
                    plural=r["name"],
                    namespaced=bool(r.get("namespaced")),
                    verbs=frozenset(r.get("verbs", [])),
                )
                out.setdefault((gname, vname, r["kind"]), res)

    def _unavailable_apiservices(self, failed: dict[str, str]) -> None:
        """Name the APIServices that are down, with the aggregator's own reason.

        Aggregated discovery simply leaves out a group whose backend never answered, so
        without this an object of that group would fail as "unknown kind" with no hint
        that a broken APIService (a metrics-server that is down, say) is the cause.
        """
        try:
            items = self._kube.get("/apis/apiregistration.k8s.io/v1/apiservices").get("items", [])
        except (KubeError, UnreachableError):
            return  # not allowed to list APIServices: discovery still works, messages are vaguer
        for svc in items:
            spec = svc.get("spec", {})
            for cond in svc.get("status", {}).get("conditions", []):
                if cond.get("type") == "Available" and cond.get("status") != "True":
                    gv = f"{spec.get('group')}/{spec.get('version')}"
                    name = svc["metadata"]["name"]
                    failed[gv] = f"APIService {name} is unavailable: {cond.get('reason')}: {cond.get('message', '')}"


class _NotAggregatedError(Exception):
    pass
