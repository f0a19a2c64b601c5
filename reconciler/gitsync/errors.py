"""The one typed error each failing step raises, and what it means to the people watching.

Every step of the pipeline that fails raises exactly one of these; the front end catches
``StepError`` in one place: the controller hands it to :mod:`reconciler.gitsync.outcome`
(status reason, Event reason, Stalled or not), the CLI prints it. The reasons are the ones
kstatus users and our alerts already match on, so they never change with the code around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from reconciler.gitsync.results import Stage, SyncResult

# What a failed stage is called in a status message ("<what> failed: ...").
STAGE_WORDS = {
    Stage.PLAN: "plan",
    Stage.PREFLIGHT: "validation",
    Stage.GUARD: "prune guard",
    Stage.PRE_HOOKS: "pre-hooks",
    Stage.APPLY: "apply",
    Stage.PRUNE: "prune",
    Stage.HEALTH: "health check",
    Stage.POST_HOOKS: "post-hooks",
}


class StepError(Exception):
    """A step failed: ``errors`` say why (first one first), the class says what it means.

    ``reason`` is the Ready condition's reason, ``event_reason`` the Warning Event's;
    ``stalled``: retrying cannot help until the spec (or the controller's flags) change;
    ``waiting``: not a failure but a wait (no Event, no failure metric).
    """

    reason: ClassVar[str] = "ReconciliationFailed"
    event_reason: ClassVar[str] = "SyncFailed"
    stalled: ClassVar[bool] = False
    waiting: ClassVar[bool] = False
    prefix: ClassVar[str] = ""  # what the status message says before the first error

    def __init__(self, *errors: str, stage: Stage | None, result: SyncResult | None = None) -> None:
        self.errors = list(errors)
        self.stage = stage  # None: not known (an unexpected exception)
        self.result = result  # the sync so far, when the pipeline itself found the failure
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The status message, without the GitSync and revision the controller puts before it."""
        first = self.errors[0] if self.errors else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"{self.lead()}{first}{more}"

    def lead(self) -> str:
        """What the status message says before the first error."""
        return self.prefix


class InvalidSpecError(StepError):
    """The GitSync's spec cannot be read: only an edit cures it."""

    reason, stalled = "InvalidSpec", True


class UnexpectedError(StepError):
    """An exception no step knows (a bug): reported like any failure, its text scrubbed."""

    prefix = "unexpected error: "


class AccessDeniedError(StepError):
    reason, stalled = "AccessDenied", True


class DependencyNotReadyError(StepError):
    reason = event_reason = "DependencyNotReady"
    waiting = True


class TargetRefusedError(StepError):
    """The target cluster is not allowed for this GitSync (spec.TargetNotAllowedError)."""

    reason, stalled = "TargetNotAllowed", True


class TargetFailedError(StepError):
    reason, prefix = "TargetFailed", "cannot connect to the target cluster: "


class SourceFailedError(StepError):
    reason, event_reason, prefix = "ArtifactFailed", "SourceFailed", "fetch failed: "


class RenderFailedError(StepError):
    reason, event_reason, prefix = "BuildFailed", "RenderFailed", "render failed: "


class PolicyFailedError(StepError):
    """The policy set cannot be loaded: the sync refuses to proceed rather than go ungated."""

    reason, prefix = "PolicyFailed", "policies cannot be loaded, the sync refuses to proceed: "


class PolicyViolationError(StepError):
    reason = event_reason = "PolicyViolation"
    prefix = "denied by policy, nothing applied or pruned: "


class InventoryConflictError(StepError):
    """The inventory belongs to another owner; retried, since deleting it is the cure."""

    reason = "InventoryConflict"


class ClusterFailedError(StepError):
    """The API server (or the inventory write) failed under a step: an exception, not a finding."""


class ShardLostError(StepError):
    """This replica no longer holds the GitSync's shard Lease: another may reconcile it now, so
    this one writes nothing more (fencing). Not reported: the new owner reports."""

    reason = event_reason = "ShardLost"


class StageFailedError(StepError):
    """Plan, validation, the prune guard, apply or prune found errors: ``result`` says how far it got."""

    def __init__(self, errors: Sequence[str], *, stage: Stage, result: SyncResult) -> None:
        self.result: SyncResult = result  # before the message is made from it
        super().__init__(*errors, stage=stage, result=result)
        self.errors = result.errors  # one list: an inventory write that fails afterwards adds to it

    def lead(self) -> str:
        stage = self.result.stage
        return f"{STAGE_WORDS.get(stage, stage.value)} failed: "


class PruneRefusedError(StageFailedError):
    """The mass-prune guard refused the revision: nothing applied, nothing pruned. Not Stalled: a
    new commit (a fixed path) or an approval of this revision cures it, and the retry sees both."""

    reason = event_reason = "PruneRefused"


class HealthCheckFailedError(StageFailedError):
    reason = event_reason = "HealthCheckFailed"


class HookFailedError(StageFailedError):
    """A chart's hook failed (a Job that did not complete): a pre-hook stops the sync before the apply."""

    reason = event_reason = "HookFailed"
