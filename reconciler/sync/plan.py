"""Desired vs live: what a sync would create, configure, leave alone or prune.

Deciding "unchanged" must be cheap, because almost every object is unchanged almost
every time. So the common case costs no request: the desired object still has the
digest recorded in the inventory when it was last applied, and every value it sets is
still the live value (a subset test, so API defaults and fields that other managers
own — an HPA's replicas — never count as drift). Only objects that fail that test are
asked about with a server-side dry-run apply (``preflight``), which both confirms the difference
(normalized quantities and defaults compare equal there) and validates the object, so
an invalid object or an immutable-field change is found before anything is written.
"""

from __future__ import annotations

import base64
import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube.client import Kube
from reconciler.kube.discovery import Resource, RestMapper, UnknownKindError
from reconciler.kube.ssa import FIELD_MANAGER
from reconciler.render.manifests import Manifest
from reconciler.sync import diffing, live
from reconciler.sync.changeset import Action
from reconciler.sync.inventory import Entry, Inventory, digest, owned_fields
from reconciler.sync.objects import (
    DISABLED,
    OWNER_LABEL,
    PRUNE_ANNOTATION,
    RECONCILE_ANNOTATION,
    ApplyStage,
    ObjectId,
    annotation,
    stage_of,
)

# Fields the API server owns: never part of a comparison.
_SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


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
    diff: list[str] = field(default_factory=list)  # human lines, Secret values masked
    patch: list[dict[str, Any]] = field(default_factory=list)  # RFC 6902 from live to desired, masked
    recreate: bool = False
    adopt: bool = False  # it existed without our label; this sync takes it over
    release: bool = False  # leaves the inventory without being deleted (prune: disabled)
    # The resource is created in this same sync (its CRD or its Namespace is new): a
    # dry run cannot validate it until that earlier stage has been applied.
    deferred: bool = False
    desired_namespaces: frozenset[str] = frozenset()
    # Applied without a dry run: the plan's only write, to an object already ours (see
    # preflight.lone_write). Its apply's refusal is reported as its dry run's would have been.
    undry: bool = False

    def set_diff(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        self.diff = diffing.human_diff(before, after)
        self.patch = diffing.json_patch(before, after)

    @property
    def stage(self) -> ApplyStage:
        return stage_of(self.oid)

    @functools.cached_property
    def digest(self) -> str:
        """Serialising a large object is the costliest step of an unchanged sync: do it once."""
        return digest(self.desired) if self.desired is not None else ""


@dataclass
class Plan:
    items: list[Item]
    errors: list[str] = field(default_factory=list)  # any error: nothing may be applied or pruned
    warnings: list[str] = field(default_factory=list)  # reported, not blocking
    unexamined: set[ObjectId] = field(default_factory=set)  # inventory ids we could not look at: kept
    gone: set[ObjectId] = field(default_factory=set)  # inventory ids confirmed absent or not ours: dropped

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
            out.versions[key] = [
                str(v.get("name")) for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("served", True)
            ]
        return out


def normalize(
    manifests: Sequence[Manifest], *, mapper: RestMapper, owner: str, default_namespace: str
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
        if kind == "Secret" and api_version == "v1" and isinstance(obj.get("stringData"), dict):
            # The server merges stringData into data and never stores it, so an applied stringData
            # never "contains" live: apply it as data (what Flux's ssa does) or every sync rewrites it.
            given = obj.pop("stringData")
            string_data = {k: base64.b64encode(str(v).encode()).decode() for k, v in given.items() if v is not None}
            obj["data"] = {**(obj.get("data") or {}), **string_data}
        if kind == "Secret" and api_version == "v1" and isinstance(obj.get("data"), dict):
            # base64 may be wrapped (kustomize wraps at 70 columns); the server stores it unwrapped,
            # so compare the unwrapped form or every sync would see a difference.
            obj["data"] = {k: "".join(str(v).split()) if v is not None else v for k, v in obj["data"].items()}
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
    manifests: Sequence[Manifest],
    *,
    mapper: RestMapper,
    inventory: Inventory,
    owner: str,
    default_namespace: str = "default",
    field_manager: str = FIELD_MANAGER,
    vouched: Mapping[ObjectId, str] | None = None,
) -> Plan:
    """Classify every desired object and every previously applied one; no dry runs yet.

    ``vouched``: objects a watch saw unchanged since they were applied, with the digest applied
    (the controller's drift watch); one git still gives that digest is unchanged without a read.
    """
    desired = normalize(manifests, mapper=mapper, owner=owner, default_namespace=default_namespace)
    out = Plan(items=[])
    orphans = _orphans(inventory, {ObjectId.of(o) for _, o, _ in desired}, mapper=mapper, into=out)
    items = [
        Item(oid=ObjectId.of(o), action=Action.CONFIGURE, source=_where(m), desired=o, resource=r)
        for m, o, r in desired
    ]
    known = {i.oid for i in items if _still_applied(i, inventory.entries.get(i.oid), (vouched or {}).get(i.oid))}
    wanted = [(i.oid, i.resource) for i in items if i.resource is not None and i.oid not in known]
    # Nothing recorded (a new sync): nothing can be labelled ours unless someone deleted the
    # inventory by hand, so no LIST; each object is then a "create" whose dry run finds out.
    fetch = inventory.entries and (wanted or orphans)
    state = live.fetch_owned(kube, owner, [*wanted, *orphans.items()]) if fetch else live.Live()
    out.unexamined |= state.unexamined
    for item in items:
        item.live = state.objects.get(item.oid)
        item.deferred = item.resource is None  # a custom resource of a CRD this revision creates
        if item.oid in known:
            item.action = Action.UNCHANGED
        else:
            _decide(item, last=inventory.entries.get(item.oid), field_manager=field_manager)
        out.items.append(item)
    for oid, res in sorted(orphans.items()):
        cur = state.objects.get(oid)
        if cur is not None:
            out.items.append(_prune_candidate(oid, res, cur))
        elif oid not in state.unexamined:
            out.gone.add(oid)  # deleted, or no longer labelled ours: never touched
    _protect_containers(out)
    return out


def _still_applied(item: Item, last: Entry | None, vouched: str | None) -> bool:
    """Git gives the digest last applied, and a watch vouches the live object is still as applied."""
    return bool(vouched) and last is not None and last.digest == vouched == item.digest


def _orphans(
    inventory: Inventory, desired: set[ObjectId], *, mapper: RestMapper, into: Plan
) -> dict[ObjectId, Resource]:
    """Inventory entries git no longer has, with the resource that serves each (prune candidates)."""
    orphans: dict[ObjectId, Resource] = {}
    for oid, entry in inventory.entries.items():
        if oid in desired:
            continue
        try:
            orphans[oid] = mapper.find_group_kind(oid.group, oid.kind)
        except UnknownKindError as e:
            # Nothing serves the kind now (its CRD is gone, or its APIService is down): keep
            # the entry, so the object is pruned once it can be examined again.
            into.unexamined.add(oid)
            into.warnings.append(f"{oid}: in the inventory but {e}; not examined (version {entry.version})")
    return orphans


def _decide(item: Item, *, last: Entry | None, field_manager: str) -> None:
    """Skip, create, or (the cheap case) unchanged: the digest and owned fields are as recorded
    and every value git sets is still live. Anything else stays "configure" for the dry run."""
    assert item.desired is not None
    cur = item.live
    if cur is not None and DISABLED in (
        annotation(cur, RECONCILE_ANNOTATION),
        annotation(item.desired, RECONCILE_ANNOTATION),
    ):
        item.action, item.reason = Action.SKIP, f"{RECONCILE_ANNOTATION}: {DISABLED}"
    elif cur is None:
        item.action = Action.CREATE  # or an adoption: preflight finds out
    elif (
        last is not None
        and last.digest == item.digest
        and last.fields == owned_fields(cur, field_manager)
        and contains(item.desired, cur)
    ):
        item.action = Action.UNCHANGED


def _prune_candidate(oid: ObjectId, res: Resource, cur: dict[str, Any]) -> Item:
    item = Item(oid=oid, action=Action.PRUNE, source="inventory", live=cur, resource=res)
    if annotation(cur, PRUNE_ANNOTATION) == DISABLED:
        item.action, item.reason, item.release = Action.SKIP, f"{PRUNE_ANNOTATION}: {DISABLED}", True
    elif annotation(cur, RECONCILE_ANNOTATION) == DISABLED:
        item.action, item.reason = Action.SKIP, f"{RECONCILE_ANNOTATION}: {DISABLED}"
    return item


def _protect_containers(p: Plan) -> None:
    """Do not prune a Namespace or CRD that still holds objects we keep.

    Deleting a Namespace deletes everything in it, and deleting a CRD deletes every one of
    its custom resources: an object git still wants, or one marked ``prune: disabled``,
    would go with it.
    """
    kept = [i for i in p.items if i.action is not Action.PRUNE]
    for item in p.items:
        if item.action is not Action.PRUNE:
            continue
        if item.oid.kind == "Namespace" and item.oid.group == "":
            inside = [k for k in kept if k.oid.namespace == item.oid.name]
        elif item.oid.kind == "CustomResourceDefinition" and item.live is not None:
            spec = item.live.get("spec") or {}
            gk = (spec.get("group"), (spec.get("names") or {}).get("kind"))
            inside = [k for k in kept if (k.oid.group, k.oid.kind) == gk]
        else:
            continue
        if inside:
            item.action = Action.SKIP
            item.reason = f"still holds {len(inside)} kept object(s), e.g. {inside[0].oid}"
            p.warnings.append(f"{item.oid}: not pruned: {item.reason}")
