"""Properties of the prune decision, over random inventories, revisions and live states.

The rules of docs/sync.md, stated for every case rather than the few a hand-written test
picks: an object is in a prune set only if it is in the previous inventory, git no longer
has it, and the live object carries this sync's owner label without ``prune: disabled``;
deletions run in reverse apply order, each conditional on the uid that was read; a
Namespace or CRD holding a kept object is never pruned; and the mass-prune guard refuses
pruning everything, or more than its share once past ``MIN_GUARDED``, for every inventory
size.  The planner runs for real against a fake API server (plain data) and a fake mapper.

Hypothesis is derandomized (``derandomize=True``) so a CI failure reproduces as is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from reliability import Recorder

from reconciler.kube.discovery import Resource, UnknownKindError
from reconciler.render.manifests import Manifest
from reconciler.sync.changeset import Action
from reconciler.sync.inventory import Entry, Inventory
from reconciler.sync.objects import (
    DISABLED,
    OWNER_LABEL,
    PRUNE_ANNOTATION,
    ObjectId,
    annotation,
    is_owned_by,
    stage_of,
)
from reconciler.sync.plan import plan
from reconciler.sync.prune import MIN_GUARDED, Guard, check_guard, prune

OWNER = "ops.apps"
OTHER = "ops.other"
PROPS = settings(max_examples=120, deadline=None, derandomize=True)
GUARD = settings(max_examples=500, deadline=None, derandomize=True)

RESOURCES = {
    ("", "ConfigMap"): Resource("", "v1", "ConfigMap", "configmaps", namespaced=True),
    ("", "Namespace"): Resource("", "v1", "Namespace", "namespaces", namespaced=False),
    ("rbac.authorization.k8s.io", "ClusterRole"): Resource(
        "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): Resource(
        "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False
    ),
    ("example.com", "Widget"): Resource("example.com", "v1", "Widget", "widgets", namespaced=True),
}
# Inventory entries of this kind cannot be examined (its CRD or APIService is gone).
GONE_KIND = ("gone.example.com", "Gadget")

# The universe objects are drawn from: few names, so overlaps (the same id desired, in the
# inventory and live under another owner) are common.
_IDS = [
    *(ObjectId("", "ConfigMap", ns, n) for ns in ("a", "b") for n in ("x", "y", "z")),
    *(ObjectId("example.com", "Widget", ns, "w") for ns in ("a", "b")),
    ObjectId("", "Namespace", "", "a"),
    ObjectId("", "Namespace", "", "b"),
    ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "reader"),
    ObjectId("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"),
    ObjectId(*GONE_KIND, "a", "g"),
]


class LiveState:
    """What the API server holds for one id."""

    ABSENT = "absent"
    OURS = "ours"
    OURS_KEPT = "ours, prune: disabled"
    OTHER_OWNER = "another GitSync's"
    UNLABELLED = "no owner label"


LIVE_STATES = [LiveState.ABSENT, LiveState.OURS, LiveState.OURS_KEPT, LiveState.OTHER_OWNER, LiveState.UNLABELLED]


def _obj(oid: ObjectId, *, uid: str, owner: str | None = None, kept: bool = False) -> dict[str, Any]:
    res = RESOURCES.get((oid.group, oid.kind))
    api_version = res.api_version if res else f"{oid.group}/v1"
    md: dict[str, Any] = {"name": oid.name, "uid": uid}
    if oid.namespace:
        md["namespace"] = oid.namespace
    if owner:
        md["labels"] = {OWNER_LABEL: owner}
    if kept:
        md["annotations"] = {PRUNE_ANNOTATION: DISABLED}
    out: dict[str, Any] = {"apiVersion": api_version, "kind": oid.kind, "metadata": md}
    if oid.kind == "CustomResourceDefinition":
        out["spec"] = {"group": "example.com", "names": {"kind": "Widget"}, "scope": "Namespaced"}
    return out


@dataclass
class FakeKube:
    """Answers the planner's LISTs (label-filtered) and records the pruner's DELETEs."""

    objects: dict[ObjectId, dict[str, Any]]
    deletes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def get(self, path: str, query: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        selector = dict(query or []).get("labelSelector", "")
        want = selector.partition("=")[2]
        items = []
        for oid, obj in self.objects.items():
            res = RESOURCES.get((oid.group, oid.kind))
            if res is None or res.collection_path(oid.namespace or None) != path:
                continue
            if not selector or is_owned_by(obj, want):
                items.append(copy.deepcopy(obj))
        return {"items": items}

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        raise AssertionError("the planner lists; it never needs a GET per object here")

    def request(self, method: str, path: str, *, body: dict[str, Any] | None = None, **_: Any) -> Any:
        assert method == "DELETE", method
        self.deletes.append((path, body or {}))
        return {}


class FakeMapper:
    def find(self, api_version: str, kind: str) -> Resource:
        group = api_version.rpartition("/")[0]
        return self.find_group_kind(group, kind)

    def find_group_kind(self, group: str, kind: str) -> Resource:
        try:
            return RESOURCES[(group, kind)]
        except KeyError:
            raise UnknownKindError(f"{group}/v1", kind) from None


@dataclass(frozen=True)
class World:
    inventory: frozenset[ObjectId]
    desired: frozenset[ObjectId]
    live: dict[ObjectId, str]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    inventory = frozenset(draw(st.sets(st.sampled_from(_IDS))))
    # git never has the unservable kind (its objects would fail planning as unknown kinds)
    desired = frozenset(draw(st.sets(st.sampled_from([i for i in _IDS if (i.group, i.kind) != GONE_KIND]))))
    live = {oid: draw(st.sampled_from(LIVE_STATES)) for oid in _IDS}
    return World(inventory, desired, live)


def _live_objects(world: World) -> dict[ObjectId, dict[str, Any]]:
    out = {}
    for n, (oid, state) in enumerate(sorted(world.live.items())):
        uid = f"uid-{n}"
        if state == LiveState.OURS:
            out[oid] = _obj(oid, uid=uid, owner=OWNER)
        elif state == LiveState.OURS_KEPT:
            out[oid] = _obj(oid, uid=uid, owner=OWNER, kept=True)
        elif state == LiveState.OTHER_OWNER:
            out[oid] = _obj(oid, uid=uid, owner=OTHER)
        elif state == LiveState.UNLABELLED:
            out[oid] = _obj(oid, uid=uid)
    return out


def _run_plan(world: World) -> tuple[Any, FakeKube]:
    kube = FakeKube(_live_objects(world))
    manifests = [Manifest(_obj(oid, uid=""), f"{oid.name}.yaml", 1) for oid in sorted(world.desired)]
    for m in manifests:  # desired objects carry no server metadata
        m.obj["metadata"].pop("uid")
    inventory = Inventory(entries={oid: Entry(oid, "v1", digest="d") for oid in world.inventory})
    p = plan(kube, manifests, mapper=FakeMapper(), inventory=inventory, owner=OWNER)  # type: ignore[arg-type]
    return p, kube


@PROPS
@given(world=worlds())
def _prune_set_is_safe(world: World) -> None:
    p, _ = _run_plan(world)
    for item in p.by_action(Action.PRUNE):
        assert item.oid in world.inventory, f"{item.oid} pruned but never in the inventory"
        assert item.oid not in world.desired, f"{item.oid} pruned while git still has it"
        assert item.live is not None
        assert is_owned_by(item.live, OWNER), f"{item.oid} pruned without our label"
        assert annotation(item.live, PRUNE_ANNOTATION) != DISABLED, f"{item.oid} pruned despite prune: disabled"
    # The unservable kind is never a candidate, and its entry is kept rather than forgotten.
    for oid in world.inventory:
        if (oid.group, oid.kind) == GONE_KIND:
            assert oid in p.unexamined
            assert oid not in p.gone


@PROPS
@given(world=worlds())
def _eligible_orphans_are_pruned(world: World) -> None:
    """The converse: safety is not bought by never pruning."""
    p, _ = _run_plan(world)
    pruned = {i.oid for i in p.by_action(Action.PRUNE)}
    for oid in world.inventory - world.desired:
        if world.live[oid] != LiveState.OURS or (oid.group, oid.kind) == GONE_KIND:
            assert oid not in pruned
            continue
        holds = [i for i in p.items if i.action is not Action.PRUNE and _inside(i.oid, oid)]
        assert (oid in pruned) == (not holds), f"{oid}: pruned={oid in pruned}, holds {holds[:1]}"


def _inside(kept: ObjectId, container: ObjectId) -> bool:
    if container.kind == "Namespace":
        return kept.namespace == container.name
    if container.kind == "CustomResourceDefinition":
        return (kept.group, kept.kind) == ("example.com", "Widget")
    return False


@PROPS
@given(world=worlds())
def _prune_order_and_uid(world: World) -> None:
    p, kube = _run_plan(world)
    report = prune(kube, p, mapper=FakeMapper())  # type: ignore[arg-type]
    assert not report.errors
    stages = [stage_of(i.oid) for i in report.deleted]
    assert stages == sorted(stages, reverse=True), "a container was deleted before what it holds"
    assert len(kube.deletes) == len(p.by_action(Action.PRUNE))
    for item, (_, body) in zip(report.deleted, kube.deletes, strict=True):
        assert item.live is not None
        assert body["preconditions"] == {"uid": item.live["metadata"]["uid"]}


# --- the mass-prune guard, for every inventory size ------------------------------------------


@dataclass(frozen=True)
class GuardCase:
    inventory: int
    pruned: int
    desired: int


@st.composite
def guard_cases(draw: st.DrawFn) -> GuardCase:
    inventory = draw(st.integers(min_value=1, max_value=5000))
    pruned = draw(st.integers(min_value=1, max_value=inventory))
    desired = draw(st.integers(min_value=0, max_value=5000))
    return GuardCase(inventory, pruned, desired)


def _guard_plan(case: GuardCase) -> Any:
    from reconciler.sync.plan import Item, Plan

    # The guard only counts: one shared Item per kind keeps 5,000-object plans cheap.
    old = Item(oid=ObjectId("", "ConfigMap", "a", "old"), action=Action.PRUNE, source="inventory", live={})
    new = Item(oid=ObjectId("", "ConfigMap", "a", "new"), action=Action.UNCHANGED, source="f", desired={})
    return Plan(items=[old] * case.pruned + [new] * case.desired)


@GUARD
@given(case=guard_cases(), ratio=st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]))
def _guard_holds(case: GuardCase, ratio: float) -> None:
    refusal = check_guard(_guard_plan(case), case.inventory, Guard(max_ratio=ratio))
    everything = case.desired == 0 or case.pruned >= case.inventory
    too_many = case.pruned >= MIN_GUARDED and case.pruned / case.inventory > ratio
    if everything or too_many:
        assert refusal is not None, f"{case} allowed at max_ratio {ratio}"
        assert "--allow-mass-prune" in refusal
    else:
        assert refusal is None, f"{case} refused at max_ratio {ratio}: {refusal}"
    assert check_guard(_guard_plan(case), case.inventory, Guard(allow_mass_prune=True, max_ratio=ratio)) is None


WORLDS = "random inventory x revision x live state (13 ids, 5 kinds, 5 ownership states)"


def test_prune_set_holds_only_inventoried_labelled_undesired_objects(reliability: Recorder) -> None:
    _prune_set_is_safe()
    reliability.record(
        area="property",
        fault=WORLDS,
        expected="prune set only holds inventoried, undesired objects labelled ours without prune: disabled",
        observed=f"held in {PROPS.max_examples} cases",
        tried=PROPS.max_examples,
    )


def test_every_eligible_orphan_is_pruned_unless_it_holds_kept_objects(reliability: Recorder) -> None:
    _eligible_orphans_are_pruned()
    reliability.record(
        area="property",
        fault=WORLDS,
        expected="every other orphan of ours is pruned, except a Namespace/CRD holding kept objects",
        observed=f"held in {PROPS.max_examples} cases",
        tried=PROPS.max_examples,
    )


def test_prune_deletes_in_reverse_apply_order_with_the_uid_read(reliability: Recorder) -> None:
    _prune_order_and_uid()
    reliability.record(
        area="property",
        fault=WORLDS + ", prune executed",
        expected="deletes in reverse apply order, each with the uid precondition of the object read",
        observed=f"held in {PROPS.max_examples} cases",
        tried=PROPS.max_examples,
    )


def test_mass_prune_guard_holds_for_every_inventory_size(reliability: Recorder) -> None:
    _guard_holds()
    reliability.record(
        area="property",
        fault="mass-prune guard: inventory 1..5000, any prune count, 0..5000 desired, 5 ratios",
        expected="refuses all-of-inventory and > max_ratio from MIN_GUARDED; --allow-mass-prune always passes",
        observed=f"held in {GUARD.max_examples} cases",
        tried=GUARD.max_examples,
    )


def test_fake_api_server_answers_like_a_label_selector() -> None:
    """The fake is part of the test: a LIST with our selector must not return others' objects."""
    oid = ObjectId("", "ConfigMap", "a", "x")
    kube = FakeKube({oid: _obj(oid, uid="1", owner=OTHER)})
    path = RESOURCES[("", "ConfigMap")].collection_path("a")
    assert kube.get(path, [("labelSelector", f"{OWNER_LABEL}={OWNER}")]) == {"items": []}
    assert len(kube.get(path, [("labelSelector", f"{OWNER_LABEL}={OTHER}")])["items"]) == 1
