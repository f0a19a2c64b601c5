"""ONE function syncs one revision: source -> render -> policy -> plan -> pre-hooks -> apply -> prune
-> health -> post-hooks.

Both front ends call :func:`sync_revision`: the controller (each GitSync, every interval) and
the CLI (``sync``, ``diff`` as a dry run, ``sync --dir --watch``). They differ only in the
steps they hand it: where the revision comes from and how it is rendered (:class:`Steps`), and
the cluster it goes into (:class:`Cluster`, in practice :class:`~reconciler.gitsync.cluster.KubeCluster`).

The safety rules live here, once: nothing is written after a plan, validation or guard error;
the inventory is written ahead of the first write; nothing is pruned after a failed apply; the
inventory always records what was applied; the revision advances only on full success; the
mass-prune guard can stop the whole sync; a chart's pre-hooks run (and must succeed) before
anything else is written, its post-hooks after health, both only when the sync changes something.
Each failing step raises one
:class:`~reconciler.gitsync.errors.StepError`, which the caller catches in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reconciler import policy
from reconciler.gitsync.errors import (
    HealthCheckFailedError,
    HookFailedError,
    PolicyViolationError,
    PruneRefusedError,
    StageFailedError,
)
from reconciler.gitsync.rendered import Rendered
from reconciler.gitsync.results import Progress, Settled, Stage, SyncOptions, SyncResult
from reconciler.render.helm import Hook
from reconciler.render.manifests import Manifest
from reconciler.source.artifact import Artifact
from reconciler.sync import health, inventory
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ApplyReport, ObjectResult
from reconciler.sync.changeset import Action
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item, Plan
from reconciler.sync.record import APPLIED


class Steps(Protocol):
    """The caller's half of a sync: where the revision comes from and what gates it.

    Each method is one step; a failing one raises its StepError (SourceFailedError, ...).
    """

    def fetch(self) -> Artifact:
        """The revision to sync, fetched."""

    def render(self, artifact: Artifact) -> Rendered | None:
        """Its manifests (and a chart's hooks); None when nothing it renders from changed since the last full sync."""

    def policies(self) -> policy.PolicySet | None:
        """The policy set to gate the revision with (None: no policies)."""

    def hold(self, revision: str) -> bool:
        """True to leave the cluster as it is (drift.mode warn on the applied revision)."""

    def report(self, violations: Sequence[policy.Violation]) -> None:
        """Tell the people watching about the policy findings (called even with none)."""


class Cluster(Protocol):
    """The cluster's half: plan, validate, apply, prune, record and check health in one cluster.

    Errors found are returned as values (the pipeline decides what they stop); an API
    server that fails underneath raises a StepError.
    """

    def load(self) -> inventory.Inventory: ...

    def plan(self, manifests: Sequence[Manifest], previous: inventory.Inventory) -> Plan: ...

    def preflight(self, p: Plan, *, progress: Callable[[Item], None] | None) -> list[str]: ...

    def write_ahead(self, previous: inventory.Inventory, p: Plan) -> tuple[inventory.Inventory, list[str]]: ...

    def apply(self, p: Plan, *, progress: Callable[[ObjectResult], None] | None) -> ApplyReport: ...

    def prune(self, p: Plan, *, progress: Callable[[Item, str], None] | None) -> pruning.PruneReport: ...

    def record(
        self, ahead: inventory.Inventory, p: Plan, *, res: SyncResult, revision: str
    ) -> tuple[inventory.Inventory | None, list[str]]: ...

    def health(self, items: Sequence[Item]) -> dict[ObjectId, health.Health]: ...

    def hooks(self, hooks: Sequence[Hook], *, event: str) -> list[str]: ...


@dataclass(frozen=True)
class Given:
    """Steps for manifests already rendered (tests, benchmarks, the prune-all on deletion)."""

    manifests: Sequence[Manifest]
    revision: str

    def fetch(self) -> Artifact:
        return Artifact(revision=self.revision, path=Path())  # nothing on disk: render hands back the manifests

    def render(self, artifact: Artifact) -> Rendered | None:
        return Rendered(manifests=self.manifests)

    def policies(self) -> policy.PolicySet | None:
        return None

    def hold(self, revision: str) -> bool:
        return False

    def report(self, violations: Sequence[policy.Violation]) -> None:
        return None


def sync_revision(
    *, steps: Steps, cluster: Cluster, options: SyncOptions, progress: Progress | None = None
) -> SyncResult:
    """Sync one revision, each step one call; raises the StepError of the step that failed."""
    cb = progress or Progress()
    res = SyncResult()
    artifact = steps.fetch()
    res.revision, res.stage = artifact.revision, Stage.RENDER
    rendered = steps.render(artifact)
    if rendered is None:
        return _settle(res, Settled.UNCHANGED)
    res.chart, res.stage = rendered.chart_revision, Stage.POLICY
    policies = steps.policies()
    if steps.hold(res.revision):
        return _settle(res, Settled.HELD)
    res.violations = _evaluate(rendered.checked(), policies, options=options)
    steps.report(res.violations)
    _enforce(res, options.policy_mode)
    res.stage = Stage.PLAN
    previous = cluster.load()  # checks the inventory's owner before anything is written
    staged = rendered.staged(previous)  # a chart: install (empty inventory) or upgrade
    res.plan = plan = cluster.plan(staged.manifests, previous)
    _check(res, plan.errors)
    if cb.planned:
        cb.planned(plan)
    res.stage = Stage.PREFLIGHT
    _check(res, cluster.preflight(plan, progress=cb.checked))
    res.stage = Stage.GUARD
    _check(res, _guard(res, previous, options), error=PruneRefusedError)
    if options.dry_run:
        return _settle(res, None)
    hooks = plan.has_changes  # Helm's hooks run on an install or upgrade, not on a no-op
    res.stage = Stage.PRE_HOOKS
    _check(res, cluster.hooks(staged.pre_hooks if hooks else (), event=f"pre-{staged.action}"), error=HookFailedError)
    res.stage = Stage.APPLY
    ahead, errors = cluster.write_ahead(previous, plan)  # nothing applied is unrecorded, even after a crash
    _check(res, errors)
    ok = False
    try:
        res.applied = applied = cluster.apply(plan, progress=cb.applied)
        _check(res, applied.errors)  # nothing is pruned after a failed apply
        res.stage = Stage.PRUNE
        res.pruned = cluster.prune(plan, progress=cb.pruned)
        _check(res, res.pruned.errors)
        ok = True
    finally:  # whatever happened: the revision advances only when all of it succeeded
        res.inventory, lost = cluster.record(ahead, plan, res=res, revision=res.revision if ok else previous.revision)
        res.errors.extend(lost)  # a failed apply or prune reports it with its own errors
    _check(res, lost)
    if options.wait:
        res.stage = Stage.HEALTH
        res.health = cluster.health([o.item for o in applied.outcomes if o.result in APPLIED])
        _check(res, _unhealthy(res.health), error=HealthCheckFailedError)
    res.stage = Stage.POST_HOOKS
    _check(res, cluster.hooks(staged.post_hooks if hooks else (), event=f"post-{staged.action}"), error=HookFailedError)
    return _settle(res, None)


def _settle(res: SyncResult, settled: Settled | None) -> SyncResult:
    res.stage, res.settled = Stage.DONE, settled
    return res


def _check(res: SyncResult, errors: Sequence[str], *, error: type[StageFailedError] = StageFailedError) -> None:
    """Stop the sync at its current stage when the step found errors."""
    if errors:
        res.errors = list(errors)
        raise error(res.errors, stage=res.stage, result=res)


def _evaluate(
    manifests: Sequence[Manifest], policies: policy.PolicySet | None, *, options: SyncOptions
) -> list[policy.Violation]:
    """The gate judges namespace-less objects in the namespace the plan will give them."""
    if policies is None or options.policy_mode == "off":
        return []
    return policy.evaluate(manifests, policies, default_namespace=options.default_namespace)


def _enforce(res: SyncResult, mode: str) -> None:
    """In enforce mode a Deny refuses the whole revision: nothing of it applied, nothing pruned."""
    if mode == "enforce" and policy.denied(res.violations):
        res.errors = [policy.describe(v) for v in res.violations if v.action == "Deny"]
        raise PolicyViolationError(*res.errors, stage=Stage.POLICY, result=res)


def _guard(res: SyncResult, previous: inventory.Inventory, options: SyncOptions) -> list[str]:
    """With prune off nothing is pruned; with it on, the mass-prune guard may stop the sync, unless
    its one-shot approval names this very revision (then ``res`` records that it was used)."""
    assert res.plan is not None
    if not options.prune:
        for item in res.plan.by_action(Action.PRUNE):
            item.action, item.reason = Action.SKIP, "prune is off"
        return []
    verdict = pruning.judge(res.plan, len(previous), guard=options.guard, revision=res.revision)
    res.approved_mass_prune = verdict.approved
    return [verdict.refusal] if verdict.refusal else []


def _unhealthy(states: dict[ObjectId, health.Health]) -> list[str]:
    bad = {oid: h for oid, h in states.items() if h.state is not health.State.CURRENT}
    return [f"{oid}: {h.state.value}: {h.message}" for oid, h in sorted(bad.items())]
