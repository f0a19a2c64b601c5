"""The values one sync of a revision produces: where it stopped, what it planned, applied and pruned.

Shared by the pipeline, its step errors and both front ends (controller and CLI), so that a
failure carries the same facts a success does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler import policy
from reconciler.gitsync.drift import Desired
from reconciler.kube.ssa import FIELD_MANAGER
from reconciler.sync import health, inventory
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ApplyReport, ObjectResult
from reconciler.sync.objects import ObjectId, owner_label_value
from reconciler.sync.plan import Item, Plan


class Stage(enum.StrEnum):
    """Where a sync is, in the order the pipeline runs them (``done``: it finished)."""

    ADMIT = "admit"  # the controller's tenancy and dependsOn checks
    TARGET = "target"  # the controller's handle on the cluster it syncs into
    SOURCE = "source"
    RENDER = "render"
    POLICY = "policy"
    PLAN = "plan"
    PREFLIGHT = "preflight"
    GUARD = "guard"
    PRE_HOOKS = "pre-hooks"  # a chart's pre-install/pre-upgrade hooks, awaited before the apply
    APPLY = "apply"
    PRUNE = "prune"
    HEALTH = "health"
    POST_HOOKS = "post-hooks"  # a chart's post-install/post-upgrade hooks, after health
    DONE = "done"


class Settled(enum.StrEnum):
    """Why a sync ended early without planning, yet without failing."""

    UNCHANGED = "unchanged"  # nothing under the GitSync's path changed since its last full sync
    HELD = "held"  # drift.mode warn: the applied revision is left as it is, drift and all


@dataclass(frozen=True)
class SyncOptions:
    """How one revision is synced into one cluster, under one inventory."""

    name: str  # the sync's name: its inventory ConfigMap and owner label (no default)
    namespace: str  # where its inventory lives (no default)
    prune: bool = True  # default True: delete what the revision no longer has
    wait: bool = False  # default False: health-check what was applied before calling it done
    timeout: float = 300.0  # default 300 s: limit for apply waits and the health check
    dry_run: bool = False  # default False: True plans and validates on the server and writes nothing
    guard: pruning.Guard = field(default_factory=pruning.Guard)  # default Guard(): the mass-prune limits
    concurrency: int = 8  # default 8: parallel API requests
    default_namespace: str = "default"  # default "default": for namespaced objects without one
    field_manager: str = FIELD_MANAGER  # default the project's field manager
    policy_mode: str = "enforce"  # default "enforce" (enforce | audit | off): what a Deny violation does
    owner_uid: str = ""  # default "": the GitSync's uid stamped on the inventory; "" (the CLI) keeps any stamp
    diff: bool = True  # default True: compute each change's diff (the CLI shows it; the controller never does)

    @property
    def owner(self) -> str:
        return owner_label_value(self.namespace, self.name)


@dataclass
class Progress:
    """Callbacks a front end (progress bar, a test) may hook; each default None: not called."""

    planned: Callable[[Plan], None] | None = None  # default None: after the plan, before any write
    checked: Callable[[Item], None] | None = None  # default None: per object validated by the dry run
    applied: Callable[[ObjectResult], None] | None = None  # default None: per object applied
    pruned: Callable[[Item, str], None] | None = None  # default None: per object pruned (or failed)


@dataclass
class SyncResult:
    """What a sync did: filled in step by step, so a failed one says how far it got."""

    revision: str = ""
    chart: str = ""  # a chart's name@version@sha256:... ("" without one)
    stage: Stage = Stage.SOURCE  # where it stopped (DONE: finished)
    settled: Settled | None = None  # set when it ended early without failing
    plan: Plan | None = None
    applied: ApplyReport | None = None
    pruned: pruning.PruneReport | None = None
    health: dict[ObjectId, health.Health] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    violations: list[policy.Violation] = field(default_factory=list)
    inventory: inventory.Inventory | None = None  # as recorded at the end of an applying sync
    approved_mass_prune: bool = False  # the guard would have refused; a one-shot approval of this revision lifted it

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ReconcileResult:
    """What the controller needs to schedule the next run of one GitSync."""

    ok: bool
    stalled: bool = False  # default False; True: retrying cannot help until the spec changes
    waiting: bool = False  # default False; True: on a dependency
    revision: str = ""  # default "": not fetched
    tracked: dict[ObjectId, Desired] | None = None  # default None; what the objects must look like now (drift)
    complete: bool = False  # default False; True: tracked holds every object of the sync (none skipped or unexamined)
    unwritten: bool = False  # default False; True: its verdict could not be written to status (retried soon)
