"""Desired vs live: what a sync would create, configure, leave alone or prune.

Deciding "unchanged" must be cheap, because almost every object is unchanged almost
every time. So the common case costs no request: the desired object still has the
digest recorded in the inventory when it was last applied, and every value it sets is
still the live value (a subset test, so API defaults and fields that other managers
own — an HPA's replicas — never count as drift). Only objects that fail that test are
asked about with a server-side dry-run apply, which both confirms the difference
(normalized quantities and defaults compare equal there) and validates the object, so
an invalid object or an immutable-field change is found before anything is written.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube.apply import FIELD_MANAGER, apply_object
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import Resource, RestMapper, UnknownKindError
from reconciler.render.manifests import Manifest
from reconciler.sync import diffing, live
from reconciler.sync.inventory import Inventory, digest
from reconciler.sync.objects import (
    DISABLED,
    ENABLED,
    FORCE_ANNOTATION,
    OWNER_LABEL,
    PRUNE_ANNOTATION,
    RECONCILE_ANNOTATION,
    ObjectId,
    Stage,
    annotation,
    stage_of,
)

# Fields the API server owns: never part of a comparison.
_SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


class Action(enum.StrEnum):
    CREATE = "create"
    CONFIGURE = "configure"
    UNCHANGED = "unchanged"
    PRUNE = "prune"
    SKIP = "skip"


@dataclass
class Item:
    """One object's fate in this sync."""

    oid: ObjectId
    action: Action
    source: str  # "file (document n)" for desired objects, "inventory" for prune candidates
    desired: dict[str, Any] | None = None
    live: dict[str, Any] | None = None
    resource: Resource | None = None
    reason: str = ""  # why skipped / why recreated
    diff: list[str] = field(default_factory=list)
    recreate: bool = False
    # The resource is created in this same sync (its CRD or its Namespace is new): a
    # dry run cannot validate it yet.
    deferred: bool = False

    @property
    def stage(self) -> Stage:
        return stage_of(self.oid)

    @property
    def digest(self) -> str:
        return digest(self.desired) if self.desired is not None else ""


@dataclass
class Plan:
    items: list[Item]
    errors: list[str] = field(default_factory=list)  # any error: nothing may be applied or pruned
    warnings: list[str] = field(default_factory=list)  # reported, not blocking

    def by_action(self, *actions: Action) -> list[Item]:
        return [i for i in self.items if i.action in actions]

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for i in self.items:
            out[i.action.value] += 1
        return out

    @property
    def has_changes(self) -> bool:
        return any(i.action in (Action.CREATE, Action.CONFIGURE, Action.PRUNE) for i in self.items)


class PlanError(Exception):
    """The desired state cannot be planned; nothing may be applied or pruned."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def _where(m: Manifest) -> str:
    return f"{m.file} (document {m.doc})"


def contains(desired: Any, live_value: Any) -> bool:
    """True if every value ``desired`` sets is present and equal in ``live_value``.

    Lists must match element by element; a list the server extended (an injected
    sidecar) fails here and is settled by the dry run instead.
    """
    if isinstance(desired, dict):
        if not isinstance(live_value, dict):
            return False
        return all(k in live_value and contains(v, live_value[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live_value, list) or len(desired) != len(live_value):
            return False
        return all(contains(d, v) for d, v in zip(desired, live_value, strict=True))
    return bool(desired == live_value)


def comparable(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The object without what the server manages (status, bookkeeping metadata)."""
    if obj is None:
        return None
    out = {k: v for k, v in obj.items() if k != "status"}
    md = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_METADATA}
    out["metadata"] = md
    return out


@dataclass
class _CrdKinds:
    """Kinds that CRDs in this same revision will serve, so their objects are not "unknown"."""

    scope: dict[tuple[str, str], bool] = field(default_factory=dict)  # (group, kind) -> namespaced
    versions: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, manifests: Sequence[Manifest]) -> _CrdKinds:
        out = cls()
        for m in manifests:
            o = m.obj
            if o.get("kind") != "CustomResourceDefinition" or not str(o.get("apiVersion", "")).startswith(
                "apiextensions.k8s.io/"
            ):
                continue
            spec = o.get("spec") or {}
            key = (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
            out.scope[key] = spec.get("scope") == "Namespaced"
            out.versions[key] = [str(v.get("name")) for v in spec.get("versions") or [] if isinstance(v, dict)]
        return out


def normalize(
    manifests: Sequence[Manifest], mapper: RestMapper, owner: str, default_namespace: str
) -> list[tuple[Manifest, dict[str, Any], Resource | None]]:
    """Desired objects as they will be applied: owner label set, namespace resolved.

    Raises :class:`PlanError` listing every object whose kind nothing serves (and no CRD
    of this revision will serve) and every identity that appears twice once defaulted.
    """
    crds = _CrdKinds.of(manifests)
    out: list[tuple[Manifest, dict[str, Any], Resource | None]] = []
    errors: list[str] = []
    seen: dict[ObjectId, Manifest] = {}
    for m in manifests:
        obj = copy.deepcopy(m.obj)
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        group = api_version.rpartition("/")[0]
        res: Resource | None
        try:
            res = mapper.find(api_version, kind)
            namespaced = res.namespaced
        except UnknownKindError as e:
            res = None
            if (group, kind) not in crds.scope:
                errors.append(f"{_where(m)}: {kind}/{obj['metadata']['name']}: {e}")
                continue
            if api_version.rpartition("/")[2] not in crds.versions[(group, kind)]:
                errors.append(
                    f"{_where(m)}: {kind}/{obj['metadata']['name']}: version {api_version} is not served by the "
                    f"CustomResourceDefinition in this revision (it serves {', '.join(crds.versions[(group, kind)])})"
                )
                continue
            namespaced = crds.scope[(group, kind)]
        md = obj["metadata"]
        if namespaced:
            md["namespace"] = md.get("namespace") or default_namespace
        else:
            md.pop("namespace", None)
        md["labels"] = {**(md.get("labels") or {}), OWNER_LABEL: owner}
        oid = ObjectId.of(obj)
        if oid in seen:
            errors.append(f"{oid} is defined twice: in {_where(seen[oid])} and in {_where(m)}")
            continue
        seen[oid] = m
        out.append((m, obj, res))
    if errors:
        raise PlanError(errors)
    return out


def plan(
    kube: Kube,
    mapper: RestMapper,
    manifests: Sequence[Manifest],
    inventory: Inventory,
    *,
    owner: str,
    default_namespace: str = "default",
) -> Plan:
    """Classify every desired object and every previously applied one; no dry runs yet."""
    desired = normalize(manifests, mapper, owner, default_namespace)
    wanted: list[tuple[ObjectId, Resource]] = [(ObjectId.of(o), r) for _, o, r in desired if r is not None]
    orphans: dict[ObjectId, Resource] = {}
    warnings: list[str] = []
    desired_ids = {ObjectId.of(o) for _, o, _ in desired}
    for oid, entry in inventory.entries.items():
        if oid in desired_ids:
            continue
        try:
            orphans[oid] = mapper.find_group_kind(oid.group, oid.kind)
        except UnknownKindError as e:
            # The kind is gone (its CRD was deleted): its objects went with it.
            warnings.append(f"{oid}: in the inventory but {e}; not pruned (version {entry.version})")
    live_objs = live.fetch_owned(kube, owner, [*wanted, *orphans.items()])

    new_namespaces = {
        o["metadata"]["name"] for _, o, _ in desired if o["kind"] == "Namespace" and o["apiVersion"] == "v1"
    }
    items: list[Item] = []
    for m, obj, res in desired:
        oid = ObjectId.of(obj)
        cur = live_objs.get(oid)
        item = Item(oid=oid, action=Action.CONFIGURE, source=_where(m), desired=obj, live=cur, resource=res)
        item.deferred = res is None or (
            oid.namespace in new_namespaces and ObjectId("", "Namespace", "", oid.namespace) not in live_objs
        )
        if cur is not None and DISABLED in (
            annotation(cur, RECONCILE_ANNOTATION),
            annotation(obj, RECONCILE_ANNOTATION),
        ):
            item.action, item.reason = Action.SKIP, f"{RECONCILE_ANNOTATION}: {DISABLED}"
        elif cur is None:
            item.action = Action.CREATE
        else:
            last = inventory.entries.get(oid)
            if last is not None and last.digest == item.digest and contains(obj, cur):
                item.action = Action.UNCHANGED
        items.append(item)
    for oid, res in sorted(orphans.items()):
        cur = live_objs.get(oid)
        if cur is None:
            continue  # already gone, or not labelled ours: never touched
        item = Item(oid=oid, action=Action.PRUNE, source="inventory", live=cur, resource=res)
        if annotation(cur, PRUNE_ANNOTATION) == DISABLED:
            item.action, item.reason = Action.SKIP, f"{PRUNE_ANNOTATION}: {DISABLED}"
        items.append(item)
    return Plan(items=items, warnings=warnings)


def _immutable_fields(e: KubeError) -> list[str]:
    fields = [c.get("field", "") for c in e.causes if "immutable" in c.get("message", "")]
    if not fields and e.status == 422 and "immutable" in e.message:
        fields = ["(see message)"]
    return [f for f in fields if f]


def preflight(
    kube: Kube,
    mapper: RestMapper,
    p: Plan,
    *,
    field_manager: str = FIELD_MANAGER,
    concurrency: int = 8,
    want_diff: bool = True,
    progress: Callable[[Item], None] | None = None,
) -> None:
    """Dry-run every create/configure: confirm real differences, compute diffs, and turn
    invalid objects and immutable-field changes into plan errors before any write."""

    def check(item: Item) -> str | None:
        assert item.desired is not None
        try:
            dry, _ = apply_object(kube, mapper, item.desired, field_manager=field_manager, dry_run=True)
        except KubeError as e:
            fields = _immutable_fields(e)
            if fields and annotation(item.desired, FORCE_ANNOTATION) == ENABLED:
                item.recreate = True
                item.reason = f"immutable field {', '.join(fields)} changed; {FORCE_ANNOTATION}: {ENABLED}"
                item.diff = [f"~ recreate: {item.reason}"]
                return None
            if fields:
                return (
                    f"{item.oid} ({item.source}): field {', '.join(fields)} is immutable and would change; "
                    f"set annotation {FORCE_ANNOTATION}: {ENABLED} to delete and recreate it"
                )
            return f"{item.oid} ({item.source}): {e.reason}: {e.message}"
        except (UnreachableError, UnknownKindError) as e:
            return f"{item.oid} ({item.source}): {e}"
        if item.action is Action.CONFIGURE:
            before, after = comparable(item.live), comparable(dry)
            if before == after:
                item.action = Action.UNCHANGED
            elif want_diff:
                item.diff = diffing.human_diff(before, after)
        elif want_diff:
            item.diff = diffing.human_diff(None, comparable(dry))
        return None

    todo = [i for i in p.items if i.action in (Action.CREATE, Action.CONFIGURE) and not i.deferred]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for item, err in zip(todo, pool.map(check, todo), strict=True):
            if err:
                p.errors.append(err)
            if progress:
                progress(item)
    for item in p.items:
        if item.deferred and want_diff:
            item.diff = diffing.human_diff(None, item.desired)
        if item.action is Action.PRUNE and want_diff:
            item.diff = diffing.human_diff(comparable(item.live), None)
