"""One sync of a rendered revision: plan, dry-run, apply, prune, record, wait.

Used by both ``reconciler sync`` and the controller, so the safety rules live in one
place: any planning or dry-run error means nothing is written; a failed apply means
nothing is pruned; the mass-prune guard can stop the whole sync; and the inventory
always keeps every object that was applied, even by a sync that later failed, so a
later sync can still prune it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler import policy
from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper
from reconciler.kube.ssa import FIELD_MANAGER
from reconciler.render.manifests import Manifest
from reconciler.sync import health, inventory, wait
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ApplyReport, ObjectResult, apply_plan
from reconciler.sync.changeset import Action
from reconciler.sync.objects import ObjectId, owner_label_value
from reconciler.sync.plan import Item, Plan, PlanError, plan
from reconciler.sync.preflight import preflight

APPLIED = frozenset({"created", "configured", "adopted", "recreated", "unchanged"})


@dataclass(frozen=True)
class Options:
    name: str
    namespace: str
    prune: bool = True
    wait: bool = False
    timeout: float = 300.0
    dry_run: bool = False
    guard: pruning.Guard = field(default_factory=pruning.Guard)
    concurrency: int = 8
    default_namespace: str = "default"
    field_manager: str = FIELD_MANAGER
    policies: policy.PolicySet | None = None
    policy_mode: str = "enforce"  # enforce | audit | off
    owner_uid: str = ""  # the GitSync's metadata.uid, stamped on the inventory; "" (the CLI) keeps any stamp

    @property
    def owner(self) -> str:
        return owner_label_value(self.namespace, self.name)


@dataclass
class Progress:
    """Callbacks a front end (progress bar, controller metrics) may hook."""

    planned: Callable[[Plan], None] | None = None
    checked: Callable[[Item], None] | None = None
    applied: Callable[[ObjectResult], None] | None = None
    pruned: Callable[[Item, str], None] | None = None


@dataclass
class Result:
    revision: str
    plan: Plan | None = None
    applied: ApplyReport | None = None
    pruned: pruning.PruneReport | None = None
    health: dict[ObjectId, health.Health] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    violations: list[policy.Violation] = field(default_factory=list)
    inventory: inventory.Inventory | None = None  # as recorded at the end of an applying sync
    stage: str = "plan"  # where it stopped: policy | plan | preflight | guard | apply | prune | health | done

    @property
    def ok(self) -> bool:
        return not self.errors


def _version(item: Item) -> str:
    assert item.desired is not None
    return str(item.desired["apiVersion"]).rpartition("/")[2]


def _write_ahead(previous: inventory.Inventory, p: Plan, owner_uid: str) -> inventory.Inventory:
    """The inventory as it must be before the first write.

    Every object this sync may create is recorded first (with an unknown digest), so that
    if the process dies mid-apply the next sync still knows those objects are ours to prune;
    and an unstamped inventory is stamped with its owner before anything is applied.
    """
    entries = dict(previous.entries)
    for i in p.by_action(Action.CREATE, Action.CONFIGURE):
        last = previous.entries.get(i.oid)
        entries[i.oid] = inventory.Entry(i.oid, _version(i), last.digest if last else "", last.fields if last else "")
    return inventory.Inventory(previous.revision, entries, owner_uid or previous.owner_uid)


def _final(
    previous: inventory.Inventory,
    ahead: inventory.Inventory,
    p: Plan,
    outcomes: Sequence[ObjectResult],
    deleted: set[ObjectId],
    field_manager: str,
    revision: str,
) -> inventory.Inventory:
    """The inventory after apply and prune: entries leave it only for a known reason.

    Dropped: objects pruned now, objects confirmed gone or no longer labelled ours, and
    objects released by ``prune: disabled``. Everything else stays — including what could
    not be examined, what a failed or skipped prune left behind, and what a failed apply
    may have written.
    """
    entries = dict(ahead.entries)
    for oid in deleted | p.gone:
        entries.pop(oid, None)
    for i in p.items:
        if i.release:
            entries.pop(i.oid, None)
    for o in outcomes:
        i = o.item
        if i.desired is None:
            continue
        if o.result in APPLIED:
            live_obj = o.live if o.live is not None else i.live
            entries[i.oid] = inventory.Entry(
                i.oid, _version(i), i.digest, inventory.owned_fields(live_obj, field_manager)
            )
        elif o.result == "skipped" and i.oid not in entries:
            # reconcile: disabled — ours, but its digest is unknown: a later sync must not call it unchanged
            entries[i.oid] = inventory.Entry(i.oid, _version(i), "", "")
    return inventory.Inventory(revision, entries, ahead.owner_uid)


def _record(kube: Kube, opts: Options, previous: inventory.Inventory, new: inventory.Inventory) -> inventory.Inventory:
    """Store the new inventory, unless it is what is stored already (a no-op sync writes
    nothing); conditional on ``previous`` being what is stored.  Returns what is stored now."""
    if new == previous:
        return previous
    expected = dataclasses.replace(new, resource_version=previous.resource_version)  # the write's precondition
    return inventory.save(
        kube, expected, namespace=opts.namespace, sync_name=opts.name, field_manager=opts.field_manager
    )


def run(
    kube: Kube,
    mapper: RestMapper,
    manifests: Sequence[Manifest],
    revision: str,
    opts: Options,
    progress: Progress | None = None,
) -> Result:
    cb = progress or Progress()
    res = Result(revision=revision)
    if opts.policies is not None and opts.policy_mode != "off":
        res.stage = "policy"
        res.violations = policy.evaluate(manifests, opts.policies)
        if opts.policy_mode == "enforce" and policy.denied(res.violations):
            # The whole revision is refused: nothing of it applied, nothing pruned.
            res.errors = [policy.describe(v) for v in res.violations if v.action == "Deny"]
            return res
    res.stage = "plan"
    previous = inventory.load(kube, opts.namespace, opts.name)
    inventory.check_owner(
        previous, namespace=opts.namespace, sync_name=opts.name, owner_uid=opts.owner_uid
    )  # before anything is written
    try:
        p = plan(
            kube,
            manifests,
            mapper=mapper,
            inventory=previous,
            owner=opts.owner,
            default_namespace=opts.default_namespace,
            field_manager=opts.field_manager,
        )
    except PlanError as e:
        res.errors = e.errors
        return res
    res.plan = p
    if cb.planned:
        cb.planned(p)
    res.stage = "preflight"
    preflight(
        kube,
        p,
        mapper=mapper,
        owner=opts.owner,
        field_manager=opts.field_manager,
        concurrency=opts.concurrency,
        progress=cb.checked,
    )
    if p.errors:
        res.errors = list(p.errors)
        return res
    if not opts.prune:
        for item in p.by_action(Action.PRUNE):
            item.action, item.reason = Action.SKIP, "prune is off"
    res.stage = "guard"
    why = pruning.check_guard(p, len(previous), opts.guard) if opts.prune else None
    if why:
        res.errors = [why]
        return res
    if opts.dry_run:
        res.stage = "done"
        return res

    res.stage = "apply"
    ahead = _write_ahead(previous, p, opts.owner_uid)
    try:
        ahead = _record(kube, opts, previous, ahead)
    except inventory.InventoryError as e:
        res.errors = [f"{e}; nothing was applied or pruned"]
        return res
    rep = ApplyReport()
    deleted: set[ObjectId] = set()
    ok = False
    try:
        rep = apply_plan(
            kube,
            p,
            mapper=mapper,
            owner=opts.owner,
            field_manager=opts.field_manager,
            concurrency=opts.concurrency,
            timeout=opts.timeout,
            progress=cb.applied,
        )
        res.applied = rep
        if not rep.ok:
            res.errors = rep.errors
            return res
        res.stage = "prune"
        pr = pruning.prune(kube, p, mapper=mapper, progress=cb.pruned)
        res.pruned = pr
        deleted = {i.oid for i in pr.deleted}
        if pr.errors:
            res.errors = pr.errors
            return res
        ok = True
    finally:
        # Recorded whatever happened above, so nothing applied is ever forgotten; the revision
        # advances only when the whole sync succeeded.
        final = _final(
            previous, ahead, p, rep.outcomes, deleted, opts.field_manager, revision if ok else previous.revision
        )
        try:
            res.inventory = _record(kube, opts, ahead, final)
        except inventory.InventoryError as e:
            res.errors.append(str(e))
            ok = False
    if not ok:
        return res

    if opts.wait:
        res.stage = "health"
        changed = [o.item for o in rep.outcomes if o.result in APPLIED]
        res.health = wait.wait_healthy(kube, changed, mapper=mapper, owner=opts.owner, timeout=opts.timeout)
        bad = {oid: h for oid, h in res.health.items() if h.state is not health.State.CURRENT}
        res.errors = [f"{oid}: {h.state.value}: {h.message}" for oid, h in sorted(bad.items())]
        if res.errors:
            return res
    res.stage = "done"
    return res
