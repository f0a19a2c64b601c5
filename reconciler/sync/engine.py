"""One sync of a rendered revision: plan, dry-run, apply, prune, record, wait.

Used by both ``reconciler sync`` and the controller, so the safety rules live in one
place: any planning or dry-run error means nothing is written; a failed apply means
nothing is pruned; the mass-prune guard can stop the whole sync; and the inventory
always keeps every object that was applied, even by a sync that later failed, so a
later sync can still prune it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler.kube.apply import FIELD_MANAGER
from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper
from reconciler.render.manifests import Manifest
from reconciler.sync import health, inventory, wait
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ApplyReport, Outcome, apply_plan
from reconciler.sync.objects import ObjectId, owner_label_value
from reconciler.sync.plan import Action, Item, Plan, PlanError, plan, preflight


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

    @property
    def owner(self) -> str:
        return owner_label_value(self.namespace, self.name)


@dataclass
class Progress:
    """Callbacks a front end (progress bar, controller metrics) may hook."""

    planned: Callable[[Plan], None] | None = None
    checked: Callable[[Item], None] | None = None
    applied: Callable[[Outcome], None] | None = None
    pruned: Callable[[Item, str], None] | None = None


@dataclass
class Result:
    revision: str
    plan: Plan | None = None
    applied: ApplyReport | None = None
    pruned: pruning.PruneReport | None = None
    health: dict[ObjectId, health.Health] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stage: str = "plan"  # where it stopped: plan | preflight | guard | apply | prune | health | done

    @property
    def ok(self) -> bool:
        return not self.errors


def _entries(items: Sequence[Item]) -> dict[ObjectId, inventory.Entry]:
    out = {}
    for i in items:
        if i.desired is not None:
            version = str(i.desired["apiVersion"]).rpartition("/")[2]
            out[i.oid] = inventory.Entry(oid=i.oid, version=version, digest=i.digest)
    return out


def _record(kube: Kube, opts: Options, previous: inventory.Inventory, new: inventory.Inventory) -> None:
    """Store the new inventory, unless it is what is stored already: a no-op sync writes nothing."""
    if new.revision == previous.revision and new.entries == previous.entries:
        return
    inventory.save(kube, opts.namespace, opts.name, new, opts.field_manager)


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
    previous = inventory.load(kube, opts.namespace, opts.name)
    try:
        p = plan(kube, mapper, manifests, previous, owner=opts.owner, default_namespace=opts.default_namespace)
    except PlanError as e:
        res.errors = e.errors
        return res
    res.plan = p
    if cb.planned:
        cb.planned(p)
    res.stage = "preflight"
    preflight(kube, mapper, p, field_manager=opts.field_manager, concurrency=opts.concurrency, progress=cb.checked)
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
    rep = apply_plan(
        kube,
        mapper,
        p,
        field_manager=opts.field_manager,
        concurrency=opts.concurrency,
        timeout=opts.timeout,
        progress=cb.applied,
    )
    res.applied = rep
    good = [o.item for o in rep.outcomes if not o.error]
    if not rep.ok:
        # Keep tracking everything that was applied before the failure, so it can be pruned later.
        merged = dict(previous.entries)
        merged.update(_entries(good))
        _record(kube, opts, previous, inventory.Inventory(previous.revision, merged))
        res.errors = rep.errors
        return res

    res.stage = "prune"
    pr = pruning.prune(kube, mapper, p, progress=cb.pruned)
    res.pruned = pr
    deleted = {i.oid for i in pr.deleted}
    kept = [i.oid for i in p.items if i.action is Action.PRUNE and i.oid not in deleted]
    entries = _entries(good)
    for oid in kept:  # a failed deletion stays in the inventory, to be retried next time
        if oid in previous.entries:
            entries[oid] = previous.entries[oid]
    # Objects kept by `prune: disabled` are not carried over: like Flux, the sync releases them.
    _record(kube, opts, previous, inventory.Inventory(revision if not pr.errors else previous.revision, entries))
    if pr.errors:
        res.errors = pr.errors
        return res

    if opts.wait:
        res.stage = "health"
        changed = [o.item for o in rep.outcomes if o.result in ("created", "configured", "recreated", "unchanged")]
        res.health = wait.wait_healthy(kube, mapper, changed, opts.owner, opts.timeout)
        bad = {oid: h for oid, h in res.health.items() if h.state is not health.State.CURRENT}
        res.errors = [f"{oid}: {h.state.value}: {h.message}" for oid, h in sorted(bad.items())]
        if res.errors:
            return res
    res.stage = "done"
    return res
