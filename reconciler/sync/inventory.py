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

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube import paths
from reconciler.kube.client import APPLY_PATCH, Kube, KubeError
from reconciler.sync.objects import GROUP, ObjectId

DATA_KEY = "inventory.json"
INVENTORY_LABEL = f"{GROUP}/inventory-of"
OWNER_UID_ANNOTATION = f"{GROUP}/owner-uid"
"""The metadata.uid of the GitSync that owns the inventory. The ConfigMap's name and the owner
label only say ``<namespace>.<name>``, which two management clusters (a hub GitSync targeting
a cluster, and that cluster's own GitSync) or a GitSync recreated under an old name can share;
the uid tells them apart, so one never prunes what the other applied."""


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
    owner_uid: str = ""  # OWNER_UID_ANNOTATION; "" = unstamped (an older version, or the CLI)
    # The ConfigMap's resourceVersion when read or last written ("" = it did not exist): the
    # next write is conditional on it.  Not part of equality: it says where, not what.
    resource_version: str = field(default="", compare=False)

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
    return paths.api_path(
        group="", version="v1", resource="configmaps", namespace=namespace, name=configmap_name(sync_name)
    )


class InventoryError(Exception):
    """The stored inventory cannot be read; pruning must not proceed on a guess."""


class InventoryOwnerError(InventoryError):
    """The stored inventory belongs to another owner: nothing it lists may be touched."""


def _foreign(namespace: str, sync_name: str, *, stored: str, owner_uid: str) -> str | None:
    """Why an inventory stamped ``stored`` is not ``owner_uid``'s, or None when it is (or either is unstamped)."""
    if not stored or not owner_uid or stored == owner_uid:
        return None
    return (
        f"the inventory ConfigMap {namespace}/{configmap_name(sync_name)} belongs to another owner "
        f"({OWNER_UID_ANNOTATION} {stored}), not to this one ({owner_uid})"
    )


def check_owner(inventory: Inventory, *, namespace: str, sync_name: str, owner_uid: str) -> None:
    """Refuse to sync over another owner's inventory (raises :class:`InventoryOwnerError`).

    An unstamped inventory is accepted (the next write stamps it), and an unstamped sync (the
    CLI) accepts any: only two different identities conflict.
    """
    why = _foreign(namespace, sync_name, stored=inventory.owner_uid, owner_uid=owner_uid)
    if why:
        raise InventoryOwnerError(
            f"{why}: a GitSync of the same namespace and name on another management cluster, or a deleted"
            " one whose orphaned objects it still lists; nothing was applied or pruned. To take those objects"
            " over deliberately, delete that ConfigMap"
        )


def delete(kube: Kube, *, namespace: str, sync_name: str, owner_uid: str) -> None:
    """Delete the inventory, unless another owner's (raises :class:`InventoryOwnerError`).

    The ConfigMap is deleted with its resourceVersion as a precondition, so a stamp written
    between the read and the delete is never deleted unseen.
    """
    cm = kube.get_or_none(_path(namespace, sync_name))
    if cm is None:
        return
    md = cm.get("metadata") or {}
    stored = str((md.get("annotations") or {}).get(OWNER_UID_ANNOTATION, ""))
    why = _foreign(namespace, sync_name, stored=stored, owner_uid=owner_uid)
    if why:
        raise InventoryOwnerError(why)
    try:
        kube.request(
            "DELETE",
            _path(namespace, sync_name),
            body={"preconditions": {"resourceVersion": md.get("resourceVersion")}},
        )
    except KubeError as e:
        if not e.not_found:
            raise


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
    md = cm.get("metadata") or {}
    owner = str((md.get("annotations") or {}).get(OWNER_UID_ANNOTATION, ""))
    return Inventory(
        revision=str(doc.get("revision", "")),
        entries=entries,
        owner_uid=owner,
        resource_version=str(md.get("resourceVersion") or ""),
    )


def save(kube: Kube, inventory: Inventory, *, namespace: str, sync_name: str, field_manager: str) -> Inventory:
    """Store ``inventory`` only if the ConfigMap is still what ``inventory.resource_version``
    says was read (absent when ""), and return it with the new resourceVersion.

    Two syncs of the same name that read the same state cannot both write it: the second gets
    a conflict and stops before it applies or prunes anything, instead of recording a list
    that forgets what the first one applied (or stamping it with another owner).
    """
    doc = {
        "revision": inventory.revision,
        "entries": [
            {"id": e.oid.inventory_id, "v": e.version, "digest": e.digest, "f": e.fields}
            for e in sorted(inventory.entries.values(), key=lambda e: e.oid)
        ],
    }
    metadata: dict[str, Any] = {
        "name": configmap_name(sync_name),
        "namespace": namespace,
        "labels": {INVENTORY_LABEL: sync_name, "app.kubernetes.io/managed-by": "gitops-reconciler"},
        **({"annotations": {OWNER_UID_ANNOTATION: inventory.owner_uid}} if inventory.owner_uid else {}),
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {DATA_KEY: json.dumps(doc, separators=(",", ":"))},
    }
    where = f"{namespace}/{configmap_name(sync_name)}"
    query = [("fieldManager", field_manager)]
    try:
        if inventory.resource_version:
            metadata["resourceVersion"] = inventory.resource_version  # a precondition of the apply
            stored = kube.request(
                "PATCH",
                _path(namespace, sync_name),
                query=[*query, ("force", "true")],
                body=body,
                content_type=APPLY_PATCH,
            )
        else:  # a create fails if another sync created it since we found none
            stored = kube.request("POST", _path(namespace, sync_name).rpartition("/")[0], query=query, body=body)
    except KubeError as e:
        if e.conflict:
            raise InventoryError(
                f"the inventory ConfigMap {where} changed since this sync read it (another sync of the same"
                " name, from another controller or the CLI, is running?); nothing more was written"
            ) from e
        raise InventoryError(f"cannot store the inventory in {where}: {e}") from e
    rv = str((stored.get("metadata") or {}).get("resourceVersion") or "")
    return dataclasses.replace(inventory, resource_version=rv)
