"""Delete what git no longer has — carefully.

An object is pruned only if all of these hold: it is in this sync's previous inventory,
it is no longer desired, the live object carries this sync's owner label, and it is not
annotated ``prune: disabled`` (the planner decides that). Deletion runs in reverse apply
order, so a Namespace or a CRD goes only after what lived in it.

The mass-prune guard catches the classic disaster — a bad merge, a wrong path, an empty
checkout — that makes everything look deleted: pruning everything, or more than a set
share of the inventory, needs an explicit approval. The CLI's is ``--allow-mass-prune`` (one
run, one revision). The controller's is a one-shot, revision-bound ``approval`` (its GitSync's
``allow-mass-prune`` annotation): it lifts the guard for a sync of exactly the revision it names,
so a later revision that again deletes too much is refused again, and an approval left behind
cannot wave through tomorrow's bad merge.
"""

from __future__ import annotations

import re
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


# A short sha names a commit as `git log --oneline` shows it: 7 hex digits at least, as git's own default.
MIN_SHA_PREFIX = 7
_DIGEST = re.compile(r"(?:(sha1|sha256):)?([0-9a-f]+)")


def cli_remedy(revision: str) -> str:
    """What the refusal tells a ``reconciler sync`` user to do: the flag that approves one run."""
    return "use --allow-mass-prune if this is intended"


@dataclass(frozen=True)
class Guard:
    """The mass-prune guard's settings (``--allow-mass-prune``, ``--max-prune-ratio``, an approval)."""

    allow_mass_prune: bool = False  # default off: pruning everything, or more than max_ratio, is refused
    max_ratio: float = 0.5  # default half: the share of the inventory one sync may prune (from MIN_GUARDED deletions)
    approval: str = ""  # default "": no one-shot approval; else the revision (or sha) whose sync may mass-prune
    remedy: Callable[[str], str] = cli_remedy  # default the CLI's: (revision) -> what the refusal says to do


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one plan: ``refusal`` (why the sync must stop, remedy included) or
    None; ``approved`` when it would have refused and the one-shot approval lifted it."""

    refusal: str | None
    approved: bool = False


def approves(approval: str, revision: str) -> bool:
    """Whether a one-shot approval names exactly this revision.

    Accepted forms: the full revision string (``main@sha1:<hex>``, ``sha256:<hex>``), its digest
    with the algorithm (``sha1:<hex>``, ``sha256:<hex>``) or the bare hex digest, each of the
    digest forms also as a prefix of at least :data:`MIN_SHA_PREFIX` digits (git's short sha).
    Anything else (``true``, ``yes``, a branch name) approves nothing: an approval must be bound
    to the revision that was looked at.
    """
    want = approval.strip()
    if not want or not revision:
        return False
    if want == revision:
        return True
    algo, _, digest = revision.rpartition("@")[2].rpartition(":")
    m = _DIGEST.fullmatch(want.lower())
    if m is None or not algo or len(m.group(2)) < MIN_SHA_PREFIX:
        return False
    return m.group(1) in (None, algo) and digest.lower().startswith(m.group(2))


def _refusal(p: Plan, inventory_size: int, max_ratio: float) -> str | None:
    """Why this plan prunes too much (without the remedy), or None."""
    n = len(p.by_action(Action.PRUNE))
    if n == 0 or inventory_size == 0:
        return None
    desired = sum(1 for i in p.items if i.desired is not None)
    if desired == 0 or n >= inventory_size:
        why = "the revision has no objects at all" if desired == 0 else "none of them is in the revision any more"
        return f"refusing to prune all {n} objects of the inventory: {why} (wrong path? empty checkout?)"
    ratio = n / inventory_size
    if n >= MIN_GUARDED and ratio > max_ratio:
        return f"refusing to prune {n} of {inventory_size} objects ({ratio:.0%} > {max_ratio:.0%})"
    return None


def judge(p: Plan, inventory_size: int, *, guard: Guard, revision: str) -> Verdict:
    """The guard's verdict on syncing ``p`` at ``revision`` over an inventory of ``inventory_size``."""
    why = _refusal(p, inventory_size, guard.max_ratio)
    if why is None or guard.allow_mass_prune:
        return Verdict(None)
    if approves(guard.approval, revision):
        return Verdict(None, approved=True)
    return Verdict(f"{why}{_unused(guard.approval)}; {guard.remedy(revision)}")


def _unused(approval: str) -> str:
    """Why the approval in place did not lift the guard ("" without one)."""
    value = approval.strip()
    if not value:
        return ""
    m = _DIGEST.fullmatch(value.lower())
    if len(value) > 100:  # an annotation may be huge: the message shows its start
        value = value[:100] + "…"
    if "@" in value or (m is not None and len(m.group(2)) >= MIN_SHA_PREFIX):
        return f" (the approval in place, {value!r}, is for another revision)"
    need = f"a sha of {MIN_SHA_PREFIX}+ hex digits or a revision string"
    return f" (the approval in place, {value!r}, names no revision: it must be {need})"


def check_guard(p: Plan, inventory_size: int, guard: Guard) -> str | None:
    """Why this plan's prune must not run, or None (at any revision: no one-shot approval applies)."""
    return judge(p, inventory_size, guard=guard, revision="").refusal


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
