"""The inventory: which objects a sync applied last time, kept in the cluster.

Prune needs to know what the previous revision applied. Keeping that list in the
cluster (a ConfigMap next to the sync) rather than in process memory or on local disk
means a restarted controller, a second replica, and the ``reconciler sync`` CLI all see
the same list, so each of them prunes exactly what the others applied.

Each entry also keeps a digest of the object as it was last applied: if git's version
still has that digest and the live object still holds every value we set, the object is
unchanged and costs no request at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube.client import APPLY_PATCH, Kube, KubeError
from reconciler.sync.objects import GROUP, ObjectId

DATA_KEY = "inventory.json"
INVENTORY_LABEL = f"{GROUP}/inventory-of"


@dataclass(frozen=True)
class Entry:
    oid: ObjectId
    version: str  # the apiVersion's version part, for status (DESIGN: inventory[].v)
    digest: str  # digest of the desired object last applied; "" = not known to be applied
    fields: str = ""  # digest of the fields our field manager owned right after that apply


@dataclass
class Inventory:
    revision: str = ""
    entries: dict[ObjectId, Entry] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entries)

    def to_status(self) -> list[dict[str, str]]:
        """DESIGN's ``status.inventory`` form."""
        return [{"id": e.oid.inventory_id, "v": e.version} for e in sorted(self.entries.values(), key=lambda e: e.oid)]


def digest(obj: dict[str, Any]) -> str:
    """Stable digest of a desired object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def owned_fields(live: dict[str, Any] | None, field_manager: str) -> str:
    """Digest of the fields ``field_manager`` owns by apply on ``live`` ("" if none).

    When someone else takes over a field we set — ``kubectl edit`` of an atomic map such
    as a Service selector moves the whole map to the editor — our entry changes even
    though every value we set may still look present, so this catches drift that a
    value comparison misses.
    """
    for mf in ((live or {}).get("metadata") or {}).get("managedFields") or []:
        if mf.get("manager") == field_manager and mf.get("operation") == "Apply" and not mf.get("subresource"):
            return digest(mf.get("fieldsV1") or {})
    return ""


def configmap_name(sync_name: str) -> str:
    return f"{sync_name}.gitsync-inventory"


def _path(namespace: str, sync_name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{configmap_name(sync_name)}"


class InventoryError(Exception):
    """The stored inventory cannot be read; pruning must not proceed on a guess."""


def load(kube: Kube, namespace: str, sync_name: str) -> Inventory:
    """The stored inventory; empty if this sync never ran.

    A corrupt inventory raises: treating it as empty would make every object look new
    (harmless) but would also forget what to prune, silently leaking objects.
    """
    cm = kube.get_or_none(_path(namespace, sync_name))
    if cm is None:
        return Inventory()
    raw = (cm.get("data") or {}).get(DATA_KEY)
    where = f"ConfigMap {namespace}/{configmap_name(sync_name)} key {DATA_KEY}"
    try:
        doc = json.loads(raw or "{}")
        entries = {}
        for e in doc.get("entries", []):
            oid = ObjectId.parse(e["id"])
            entries[oid] = Entry(
                oid=oid, version=str(e.get("v", "")), digest=str(e.get("digest", "")), fields=str(e.get("f", ""))
            )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InventoryError(f"{where} is not a valid inventory: {e}") from e
    return Inventory(revision=str(doc.get("revision", "")), entries=entries)


def save(kube: Kube, namespace: str, sync_name: str, inventory: Inventory, field_manager: str) -> None:
    doc = {
        "revision": inventory.revision,
        "entries": [
            {"id": e.oid.inventory_id, "v": e.version, "digest": e.digest, "f": e.fields}
            for e in sorted(inventory.entries.values(), key=lambda e: e.oid)
        ],
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(sync_name),
            "namespace": namespace,
            "labels": {INVENTORY_LABEL: sync_name, "app.kubernetes.io/managed-by": "gitops-reconciler"},
        },
        "data": {DATA_KEY: json.dumps(doc, separators=(",", ":"))},
    }
    try:
        kube.request(
            "PATCH",
            _path(namespace, sync_name),
            query=[("fieldManager", field_manager), ("force", "true")],
            body=body,
            content_type=APPLY_PATCH,
        )
    except KubeError as e:
        raise InventoryError(f"cannot store the inventory in {namespace}/{configmap_name(sync_name)}: {e}") from e
