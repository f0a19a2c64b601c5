"""Delete what git no longer has — carefully.

An object is pruned only if all of these hold: it is in this sync's previous inventory,
it is no longer desired, the live object carries this sync's owner label, and it is not
annotated ``prune: disabled`` (the planner decides that). Deletion runs in reverse apply
order, so a Namespace or a CRD goes only after what lived in it.

The mass-prune guard catches the classic disaster — a bad merge, a wrong path, an empty
checkout — that makes everything look deleted: pruning everything, or more than a set
share of the inventory, needs an explicit ``--allow-mass-prune``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.kube import ssa
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.sync.changeset import Action, Effect
from reconciler.sync.objects import ApplyStage
from reconciler.sync.plan import Item, Plan

# Below this many deletions the ratio rule does not apply: deleting 2 of 3 objects in a
# tiny sync is ordinary work, deleting 600 of 1,000 is not.
MIN_GUARDED = 5


@dataclass(frozen=True)
class Guard:
    """The mass-prune guard's settings (``--allow-mass-prune``, ``--max-prune-ratio``)."""

    allow_mass_prune: bool = False  # default off: pruning everything, or more than max_ratio, is refused
    max_ratio: float = 0.5  # default half: the share of the inventory one sync may prune (from MIN_GUARDED deletions)


def check_guard(p: Plan, inventory_size: int, guard: Guard) -> str | None:
    """Why this plan's prune must not run, or None."""
    n = len(p.by_action(Action.PRUNE))
    if guard.allow_mass_prune or n == 0 or inventory_size == 0:
        return None
    desired = sum(1 for i in p.items if i.desired is not None)
    if desired == 0 or n >= inventory_size:
        why = "the revision has no objects at all" if desired == 0 else "none of them is in the revision any more"
        return (
            f"refusing to prune all {n} objects of the inventory: {why} "
            "(wrong path? empty checkout?); use --allow-mass-prune if this is intended"
        )
    ratio = n / inventory_size
    if n >= MIN_GUARDED and ratio > guard.max_ratio:
        return (
            f"refusing to prune {n} of {inventory_size} objects ({ratio:.0%} > {guard.max_ratio:.0%}); "
            "use --allow-mass-prune if this is intended"
        )
    return None


@dataclass
class PruneReport:
    deleted: list[Item] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def prune(
    kube: Kube, p: Plan, *, mapper: RestMapper, progress: Callable[[Item, Effect], None] | None = None
) -> PruneReport:
    """Delete the plan's prune items in reverse apply order; a failure is reported and the rest go on."""
    report = PruneReport()
    for stage in reversed(ApplyStage):
        for item in p.items:
            if item.action is not Action.PRUNE or item.stage is not stage or item.live is None:
                continue
            uid = (item.live.get("metadata") or {}).get("uid")
            try:
                ssa.delete(kube, item.live, mapper=mapper, uid=uid)
            except (KubeError, UnreachableError, UnknownKindError) as e:
                report.errors.append(_failure(item, e, uid=uid))
                if progress:
                    progress(item, Effect.FAILED)
                continue
            report.deleted.append(item)
            if progress:
                progress(item, Effect.PRUNED)
    return report


def _failure(item: Item, e: Exception, *, uid: str | None) -> str:
    """Why one delete failed; the uid precondition's conflict in words a reader can act on."""
    if uid and isinstance(e, KubeError) and e.conflict:
        return (
            f"{item.oid}: not pruned: it was deleted and recreated since this sync read it (uid {uid} is gone), so"
            " the new object is left alone; the next sync examines it again"
        )
    return f"{item.oid}: prune failed: {e}"
