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
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube.apply import FIELD_MANAGER, apply_object
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import Resource, RestMapper, UnknownKindError
from reconciler.render.manifests import Manifest
from reconciler.sync import diffing, immutable, live
from reconciler.sync.inventory import Inventory, digest, owned_fields
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
    diff: list[str] = field(default_factory=list)  # human lines, Secret values masked
    patch: list[dict[str, Any]] = field(default_factory=list)  # RFC 6902 from live to desired, masked
    recreate: bool = False
    adopt: bool = False  # it existed without our label; this sync takes it over
    release: bool = False  # leaves the inventory without being deleted (prune: disabled)
    # The resource is created in this same sync (its CRD or its Namespace is new): a
    # dry run cannot validate it until that earlier stage has been applied.
    deferred: bool = False
    desired_namespaces: frozenset[str] = frozenset()

    def set_diff(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        self.diff = diffing.human_diff(before, after)
        self.patch = diffing.json_patch(before, after)

    @property
    def stage(self) -> Stage:
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
    mapper: RestMapper,
    manifests: Sequence[Manifest],
    inventory: Inventory,
    *,
    owner: str,
    default_namespace: str = "default",
    field_manager: str = FIELD_MANAGER,
) -> Plan:
    """Classify every desired object and every previously applied one; no dry runs yet."""
    desired = normalize(manifests, mapper, owner, default_namespace)
    wanted: list[tuple[ObjectId, Resource]] = [(ObjectId.of(o), r) for _, o, r in desired if r is not None]
    orphans: dict[ObjectId, Resource] = {}
    out = Plan(items=[])
    desired_ids = {ObjectId.of(o) for _, o, _ in desired}
    for oid, entry in inventory.entries.items():
        if oid in desired_ids:
            continue
        try:
            orphans[oid] = mapper.find_group_kind(oid.group, oid.kind)
        except UnknownKindError as e:
            # Nothing serves the kind now (its CRD is gone, or its APIService is down): keep
            # the entry, so the object is pruned once it can be examined again.
            out.unexamined.add(oid)
            out.warnings.append(f"{oid}: in the inventory but {e}; not examined (version {entry.version})")
    state = live.fetch_owned(kube, owner, [*wanted, *orphans.items()])
    out.unexamined |= state.unexamined

    for m, obj, res in desired:
        oid = ObjectId.of(obj)
        cur = state.objects.get(oid)
        item = Item(oid=oid, action=Action.CONFIGURE, source=_where(m), desired=obj, live=cur, resource=res)
        item.deferred = res is None  # a custom resource of a CRD this revision creates
        if cur is not None and DISABLED in (
            annotation(cur, RECONCILE_ANNOTATION),
            annotation(obj, RECONCILE_ANNOTATION),
        ):
            item.action, item.reason = Action.SKIP, f"{RECONCILE_ANNOTATION}: {DISABLED}"
        elif cur is None:
            item.action = Action.CREATE  # or an adoption: preflight finds out
        else:
            last = inventory.entries.get(oid)
            if (
                last is not None
                and last.digest == item.digest
                and last.fields == owned_fields(cur, field_manager)
                and contains(obj, cur)
            ):
                item.action = Action.UNCHANGED
        out.items.append(item)
    for oid, res in sorted(orphans.items()):
        cur = state.objects.get(oid)
        if cur is None:
            if oid not in state.unexamined:
                out.gone.add(oid)  # deleted, or no longer labelled ours: never touched
            continue
        item = Item(oid=oid, action=Action.PRUNE, source="inventory", live=cur, resource=res)
        if annotation(cur, PRUNE_ANNOTATION) == DISABLED:
            item.action, item.reason, item.release = Action.SKIP, f"{PRUNE_ANNOTATION}: {DISABLED}", True
        elif annotation(cur, RECONCILE_ANNOTATION) == DISABLED:
            item.action, item.reason = Action.SKIP, f"{RECONCILE_ANNOTATION}: {DISABLED}"
        out.items.append(item)
    _protect_containers(out)
    return out


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


def _missing_namespace(e: KubeError) -> bool:
    return e.status == 404 and e.reason == "NotFound" and "namespaces" in e.message


def dry_run(
    kube: Kube, mapper: RestMapper, item: Item, *, owner: str, field_manager: str, want_diff: bool
) -> str | None:
    """Validate one create/configure with a server-side dry run; returns an error, or None.

    Also settles what the plan could not know cheaply: whether a "create" is really an
    object that exists without our label (adopted — unless another sync owns it), whether
    a "configure" changes anything at all, and what the diff is.
    """
    assert item.desired is not None
    desired_ns = item.desired_namespaces
    try:
        dry, created = apply_object(kube, mapper, item.desired, field_manager=field_manager, dry_run=True)
    except KubeError as e:
        if _missing_namespace(e) and item.oid.namespace in desired_ns:
            item.deferred = True  # its Namespace is created by this sync; checked again before its stage
            return None
        fields = immutable.fields(e)
        said = immutable.server_message(e)
        if fields and annotation(item.desired, FORCE_ANNOTATION) == ENABLED and item.live is not None:
            item.recreate = True
            item.reason = f"immutable field {', '.join(fields)} changed; {FORCE_ANNOTATION}: {ENABLED}"
            item.diff = [f"~ recreate: {item.reason}"]
            return None
        if fields:
            hint = (
                f"set annotation {FORCE_ANNOTATION}: {ENABLED} to delete and recreate it"
                if item.live is not None
                else "it exists without this sync's label, so it is not recreated; delete it by hand"
            )
            below = [p for f in fields for p in immutable.changed_below(f, item.desired, item.live)]
            what = f" (git changes {', '.join(below)})" if below else ""
            return (
                f"{item.oid} ({item.source}): field {', '.join(fields)} is immutable and would change{what}; {hint}. "
                f"The API server said: {said}"
            )
        return f"{item.oid} ({item.source}): {e.reason}: {e.message}"
    except (UnreachableError, UnknownKindError) as e:
        return f"{item.oid} ({item.source}): {e}"
    if item.action is Action.CREATE and not created and annotation(item.desired, RECONCILE_ANNOTATION) == DISABLED:
        # It exists, and git says never to update it (a chart's create-only CRD): leave it, whoever owns it.
        item.action, item.reason = Action.SKIP, f"exists; {RECONCILE_ANNOTATION}: {DISABLED}"
        return None
    if item.action is Action.CREATE and not created:
        # It exists but is not labelled ours: adopt it, unless another sync owns it.
        real = kube.get_or_none(
            mapper.find(item.desired["apiVersion"], item.desired["kind"]).object_path(
                item.oid.name, item.oid.namespace or None
            )
        )
        other = ((real or {}).get("metadata") or {}).get("labels", {}).get(OWNER_LABEL)
        if other and other != owner:
            return (
                f"{item.oid} ({item.source}): already managed by sync {other} "
                f"(label {OWNER_LABEL}); two syncs must not manage one object"
            )
        item.action, item.live, item.adopt = Action.CONFIGURE, real, True
        item.reason = "adopting an existing object"
    if item.action is Action.CONFIGURE:
        before, after = comparable(item.live), comparable(dry)
        if before == after and not item.adopt:
            item.action = Action.UNCHANGED
            item.live = dry if item.live is None else item.live
        elif want_diff:
            item.set_diff(before, after)
    elif want_diff:
        item.set_diff(None, comparable(dry))
    return None


def preflight(
    kube: Kube,
    mapper: RestMapper,
    p: Plan,
    *,
    owner: str,
    field_manager: str = FIELD_MANAGER,
    concurrency: int = 8,
    want_diff: bool = True,
    progress: Callable[[Item], None] | None = None,
) -> None:
    """Dry-run every create/configure: confirm real differences, compute diffs, and turn
    invalid objects, immutable-field changes and objects of other syncs into plan errors
    before any write."""
    new_namespaces = frozenset(
        i.oid.name for i in p.items if i.desired is not None and i.oid.kind == "Namespace" and i.oid.group == ""
    )
    todo = [i for i in p.items if i.action in (Action.CREATE, Action.CONFIGURE) and not i.deferred]
    for i in todo:
        i.desired_namespaces = new_namespaces

    def check(item: Item) -> str | None:
        return dry_run(kube, mapper, item, owner=owner, field_manager=field_manager, want_diff=want_diff)

    def check_all(items: list[Item]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for item, err in zip(items, pool.map(check, items), strict=True):
                if err:
                    p.errors.append(err)
                if progress:
                    progress(item)

    # Namespaces first: a dry run in a Namespace that does not exist yet can only answer
    # "namespace not found", so what goes into a truly new one (still a create after its own
    # dry run, not an adoption) is deferred without that request and validated before its stage.
    namespaces: list[Item] = []
    rest: list[Item] = []
    for i in todo:
        (namespaces if i.oid.kind == "Namespace" and i.oid.group == "" else rest).append(i)
    check_all(namespaces)
    new = {i.oid.name for i in namespaces if i.action is Action.CREATE}
    for i in rest:
        if i.oid.namespace in new:
            i.deferred = True
            if progress:
                progress(i)
    check_all([i for i in rest if not i.deferred])
    for item in p.items:
        if item.deferred and want_diff:
            item.set_diff(None, item.desired)
        if item.action is Action.PRUNE and want_diff:
            item.set_diff(comparable(item.live), None)
