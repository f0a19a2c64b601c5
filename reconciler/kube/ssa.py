"""Server-side apply and delete of single objects.

Server-side apply (rather than client-side three-way merges) lets the API server track
which fields we own: fields set by other managers (an HPA's ``replicas``, a mutating
webhook's defaults) stay theirs, and our diff can ignore them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.kube.client import APPLY_PATCH, Kube, KubeError
from reconciler.kube.discovery import Resource, RestMapper

FIELD_MANAGER = "gitops-reconciler"


@dataclass(frozen=True)
class ApplyResponse:
    """What one apply returned: the object as stored (or as it would be, in a dry run)."""

    live: dict[str, Any]
    created: bool  # HTTP 201: the object did not exist before; tells a create from an update or adoption


def describe(obj: dict[str, Any]) -> str:
    """``Kind/namespace/name`` (or ``Kind/name``): how every message names an object."""
    md = obj.get("metadata") or {}
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{ns}/{md.get('name')}" if ns else f"{obj.get('kind')}/{md.get('name')}"


def locate(mapper: RestMapper, obj: dict[str, Any], default_namespace: str = "default") -> tuple[Resource, str | None]:
    """Resource and effective namespace of an object (cluster-scoped kinds have none)."""
    res = mapper.find(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    ns = (obj.get("metadata") or {}).get("namespace") or default_namespace
    return res, (ns if res.namespaced else None)


def apply(
    kube: Kube,
    obj: dict[str, Any],
    *,
    mapper: RestMapper,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
    dry_run: bool = False,
    default_namespace: str = "default",
) -> ApplyResponse:
    """Apply one object; returns it as the API server stored (or would store) it.

    ``force`` takes ownership of fields another manager set: git is the source of truth
    for the fields it names, as in Flux and Argo CD.
    """
    res, ns = locate(mapper, obj, default_namespace)
    body = dict(obj)
    if ns is not None:
        body["metadata"] = {**obj["metadata"], "namespace": ns}
    query = [("fieldManager", field_manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    status, live = kube.request(
        "PATCH",
        res.object_path(obj["metadata"]["name"], ns),
        query=query,
        body=body,
        content_type=APPLY_PATCH,
        with_status=True,
    )
    return ApplyResponse(live=live, created=status == 201)


def delete(
    kube: Kube,
    obj: dict[str, Any],
    *,
    mapper: RestMapper,
    propagation: str = "Background",
    default_namespace: str = "default",
    uid: str | None = None,
) -> bool:
    """Delete one object; False if it was already gone.

    With ``uid`` the API server deletes only that very object (409 Conflict otherwise): an
    object recreated by someone else between our read and our delete survives.
    """
    res, ns = locate(mapper, obj, default_namespace)
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        kube.request("DELETE", res.object_path(obj["metadata"]["name"], ns), body=body)
    except KubeError as e:
        if e.not_found:
            return False
        raise
    return True
