"""Identity, ownership marks and apply order of the objects a sync manages.

These are the fixed names of DESIGN.md in one place, so the planner, the applier, the
pruner and (later) the controller agree on what "ours" and "before" mean.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

GROUP = "gitops.reconciler.dev"
OWNER_LABEL = f"{GROUP}/sync"
PRUNE_ANNOTATION = f"{GROUP}/prune"
RECONCILE_ANNOTATION = f"{GROUP}/reconcile"
FORCE_ANNOTATION = f"{GROUP}/force"
DISABLED = "disabled"
ENABLED = "enabled"


@dataclass(frozen=True, order=True)
class ObjectId:
    """Version-independent identity: an object moved from v1beta1 to v1 is the same object."""

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectId:
        api_version = str(obj.get("apiVersion", ""))
        md = obj.get("metadata") or {}
        return cls(
            group=api_version.rpartition("/")[0],
            kind=str(obj.get("kind", "")),
            namespace=str(md.get("namespace") or ""),
            name=str(md.get("name", "")),
        )

    @classmethod
    def parse(cls, inventory_id: str) -> ObjectId:
        """Inverse of :attr:`inventory_id` (Flux's ``<namespace>_<name>_<group>_<Kind>``)."""
        # Namespaces, groups and kinds cannot hold "_", but some names can (RBAC names are
        # free-form path segments), so split from both ends.
        ns, sep, rest = inventory_id.partition("_")
        parts = rest.rsplit("_", 2)
        if not sep or len(parts) != 3 or not parts[0] or not parts[2]:
            raise ValueError(f"malformed inventory id {inventory_id!r}")
        name, group, kind = parts
        return cls(group=group, kind=kind, namespace=ns, name=name)

    @property
    def inventory_id(self) -> str:
        return f"{self.namespace}_{self.name}_{self.group}_{self.kind}"

    def __str__(self) -> str:
        """``Kind/namespace/name``: how every message names an object."""
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


class ApplyStage(enum.IntEnum):
    """Apply order; prune runs it backwards (namespaced objects before their Namespace,
    Namespaces before the CRDs whose custom resources they may hold)."""

    CRDS = 0
    NAMESPACES = 1
    CLUSTER = 2
    NAMESPACED = 3


def stage_of(oid: ObjectId) -> ApplyStage:
    if oid.kind == "CustomResourceDefinition" and oid.group == "apiextensions.k8s.io":
        return ApplyStage.CRDS
    if oid.kind == "Namespace" and oid.group == "":
        return ApplyStage.NAMESPACES
    return ApplyStage.NAMESPACED if oid.namespace else ApplyStage.CLUSTER


def annotation(obj: dict[str, Any] | None, key: str) -> str | None:
    if not obj:
        return None
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def owner_label_value(sync_namespace: str, sync_name: str) -> str:
    return f"{sync_namespace}.{sync_name}"


def is_owned_by(obj: dict[str, Any], owner: str) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL) == owner
