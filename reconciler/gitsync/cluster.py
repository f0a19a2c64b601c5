"""The cluster's half of the pipeline: each step one call into ``reconciler.sync``.

Errors a step finds (a bad object, a failed apply) come back as values for the pipeline to
judge; an API server or inventory write that fails underneath becomes the step's one typed
error here, so the caller catches a single family of exceptions.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from reconciler.gitsync import hooks as helm_hooks
from reconciler.gitsync.drift import Vouched
from reconciler.gitsync.errors import ClusterFailedError, InventoryConflictError, ShardLostError
from reconciler.gitsync.results import Stage, SyncOptions, SyncResult
from reconciler.kube.client import FenceError, Kube, KubeError, UnreachableError
from reconciler.kube.discovery import Resource, RestMapper
from reconciler.render.helm import Hook
from reconciler.render.manifests import Manifest
from reconciler.sync import health, inventory, record, wait
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ApplyReport, ObjectResult, apply_plan
from reconciler.sync.health import Health
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item, Plan, PlanError, plan
from reconciler.sync.preflight import preflight

P = ParamSpec("P")
R = TypeVar("R")
WATCH_SLICE = 5.0
"""Seconds a health wait trusts the watch alone before it confirms with one LIST (a watch that
stalls silently costs a slow verdict, never a wrong one)."""
Held = dict[ObjectId, dict[str, Any] | None]


class HeldEvents(Protocol):
    """The drift watch's view of a GitSync's objects while its sync runs (drift.DriftWatcher)."""

    def watching(self, res: Resource) -> bool: ...

    def vouched(self, key: tuple[str, str]) -> Mapping[ObjectId, Vouched]: ...

    def wait_held(self, key: tuple[str, str], *, done: Callable[[Held], bool], timeout: float) -> bool: ...


def _typed(stage: Stage) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn what the API server raises under a step into that step's StepError (cause kept)."""

    def wrap(step: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(step)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return step(*args, **kwargs)
            except inventory.InventoryOwnerError as e:
                raise InventoryConflictError(str(e), stage=stage) from e
            except FenceError as e:  # our shard claim lapsed under the step: its new owner goes on
                raise ShardLostError(str(e), stage=stage) from e
            except (inventory.InventoryError, KubeError, UnreachableError) as e:
                raise ClusterFailedError(str(e), stage=stage) from e

        return call

    return wrap


def _always() -> bool:
    return True


def _fenced(stage: Stage) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A write phase starts only while this replica holds the GitSync's shard (``holds``):
    with shards, two replicas must never write for one GitSync at once. Checked once at the start
    of the phase, which is cheap (no request) and bounded by the Lease's fencing margin."""

    def wrap(step: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(step)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            cluster = args[0]
            assert isinstance(cluster, KubeCluster)
            if not cluster.holds():
                raise ShardLostError("this replica no longer holds the GitSync's shard", stage=stage)
            return step(*args, **kwargs)

        return call

    return wrap


@dataclass(frozen=True)
class KubeCluster:
    """One cluster, one inventory: the real :class:`~reconciler.gitsync.pipeline.Cluster`."""

    kube: Kube
    mapper: RestMapper
    options: SyncOptions
    holds: Callable[[], bool] = _always  # default: always (no shards); checked before each write phase
    applied: dict[ObjectId, dict[str, Any]] = field(default_factory=dict)  # default {}: apply responses, for health
    watch: HeldEvents | None = None  # default None: health is polled; else read from the watch's events
    vouched: dict[ObjectId, Vouched] = field(default_factory=dict)  # default {}: what the watch vouched for at plan

    @_typed(Stage.PLAN)
    def load(self) -> inventory.Inventory:
        o = self.options
        previous = inventory.load(self.kube, o.namespace, o.name)
        # before anything is written
        inventory.check_owner(previous, namespace=o.namespace, sync_name=o.name, owner_uid=o.owner_uid)
        return previous

    @_typed(Stage.PLAN)
    def plan(self, manifests: Sequence[Manifest], previous: inventory.Inventory) -> Plan:
        o = self.options
        self.vouched.update(self.watch.vouched((o.namespace, o.name)) if self.watch else {})
        try:
            return plan(
                self.kube,
                manifests,
                mapper=self.mapper,
                inventory=previous,
                owner=o.owner,
                default_namespace=o.default_namespace,
                field_manager=o.field_manager,
                vouched={oid: v.digest for oid, v in self.vouched.items()},
            )
        except PlanError as e:
            return Plan(items=[], errors=e.errors)

    @_typed(Stage.PREFLIGHT)
    def preflight(self, p: Plan, *, progress: Callable[[Item], None] | None) -> list[str]:
        o = self.options
        preflight(
            self.kube,
            p,
            mapper=self.mapper,
            owner=o.owner,
            field_manager=o.field_manager,
            concurrency=o.concurrency,
            want_diff=o.diff,
            progress=progress,
        )
        return list(p.errors)

    @_typed(Stage.APPLY)
    @_fenced(Stage.APPLY)
    def write_ahead(self, previous: inventory.Inventory, p: Plan) -> tuple[inventory.Inventory, list[str]]:
        ahead = record.write_ahead(previous, p, self.options.owner_uid)
        try:
            return self._store(previous, ahead), []
        except inventory.InventoryError as e:
            return ahead, [f"{e}; nothing was applied or pruned"]

    @_typed(Stage.APPLY)
    @_fenced(Stage.APPLY)
    def apply(self, p: Plan, *, progress: Callable[[ObjectResult], None] | None) -> ApplyReport:
        o = self.options
        report = apply_plan(
            self.kube,
            p,
            mapper=self.mapper,
            owner=o.owner,
            field_manager=o.field_manager,
            concurrency=o.concurrency,
            timeout=o.timeout,
            progress=progress,
        )
        self.applied.update({out.item.oid: out.live for out in report.outcomes if out.live is not None})
        return report

    @_typed(Stage.PRUNE)
    @_fenced(Stage.PRUNE)
    def prune(self, p: Plan, *, progress: Callable[[Item, str], None] | None) -> pruning.PruneReport:
        return pruning.prune(self.kube, p, mapper=self.mapper, progress=progress)

    @_typed(Stage.PRUNE)
    @_fenced(Stage.PRUNE)
    def record(
        self, ahead: inventory.Inventory, p: Plan, *, res: SyncResult, revision: str
    ) -> tuple[inventory.Inventory | None, list[str]]:
        final = record.final(
            ahead,
            p,
            outcomes=res.applied.outcomes if res.applied else [],
            deleted={i.oid for i in res.pruned.deleted} if res.pruned else set(),
            field_manager=self.options.field_manager,
            revision=revision,
        )
        try:
            return self._store(ahead, final), []
        except inventory.InventoryError as e:
            return None, [str(e)]

    @_typed(Stage.HEALTH)
    def health(self, items: Sequence[Item]) -> dict[ObjectId, health.Health]:
        """Objects already Current in their apply response (a ServiceAccount, a Service, a
        ConfigMap: kinds without a rollout) or, left unchanged, in the plan's read of them, are not
        polled; the rest are judged from the drift
        watch's events where it watches their kind (a Deployment's status update arrives as an
        event: no request), and polled where it does not."""
        o = self.options
        deadline = time.monotonic() + o.timeout
        # what this sync read of each object: its apply response, or (left unchanged) the plan's read
        seen = {i.oid: self.applied.get(i.oid, i.live) for i in items}
        known = {oid: health.assess(obj) for oid, obj in seen.items() if obj is not None}
        known |= {oid: h for oid in seen if oid not in known and (h := self._vouched_health(oid)) is not None}
        current = {oid: h for oid, h in known.items() if h.state is health.State.CURRENT}
        rest = [i for i in items if i.oid not in current]
        while rest:
            current |= self._watched(rest, timeout=min(WATCH_SLICE, deadline - time.monotonic()))
            rest = [i for i in rest if i.oid not in current]
            if not rest:
                break
            left = deadline - time.monotonic()
            last = self.watch is None or not self._gens(rest) or left <= WATCH_SLICE
            polled = wait.wait_healthy(
                self.kube, rest, mapper=self.mapper, owner=o.owner, timeout=left if last else 0.0
            )  # one LIST when the watch is judging too, else polled to the deadline
            current |= {oid: h for oid, h in polled.items() if h.state is health.State.CURRENT}
            if last or any(h.state is health.State.FAILED for h in polled.values()):
                return current | polled
            rest = [i for i in rest if i.oid not in current]
        return current

    def _vouched_health(self, oid: ObjectId) -> Health | None:
        """Left alone without a read: its health as the watch last saw it (None: unknown)."""
        v = self.vouched.get(oid)
        return v.health if v is not None else None

    def _gens(self, items: Sequence[Item]) -> dict[ObjectId, int]:
        """The generation each applied object must reach, for those whose kind the watch sees."""
        if self.watch is None:
            return {}
        return {
            i.oid: int((self.applied[i.oid].get("metadata") or {}).get("generation") or 0)
            for i in items
            if i.oid in self.applied and i.resource is not None and self.watch.watching(i.resource)
        }

    def _watched(self, items: Sequence[Item], *, timeout: float) -> dict[ObjectId, Health]:
        """Wait up to ``timeout`` for the watch to show ``items`` Current (at the generation
        applied, never an older one); what it showed Current, by then."""
        gens = self._gens(items)
        if not gens or self.watch is None or timeout <= 0:
            return {}
        seen: dict[ObjectId, Health] = {}

        def done(held: Held) -> bool:
            for oid, gen in gens.items():
                obj = held.get(oid)
                if obj is not None and int((obj.get("metadata") or {}).get("generation") or 0) >= gen:
                    seen[oid] = health.assess(obj)
            states = [seen[oid].state if oid in seen else None for oid in gens]
            return all(s is health.State.CURRENT for s in states) or health.State.FAILED in states

        self.watch.wait_held((self.options.namespace, self.options.name), done=done, timeout=timeout)
        return {oid: h for oid, h in seen.items() if h.state is health.State.CURRENT}

    @_typed(Stage.PRE_HOOKS)
    @_fenced(Stage.PRE_HOOKS)
    def hooks(self, hooks: Sequence[Hook], *, event: str) -> list[str]:
        """Run a chart's hooks of one event in order (none: nothing to do); the first failure stops them."""
        if not hooks:
            return []
        o = self.options
        run = helm_hooks.HookRun(
            kube=self.kube,
            mapper=self.mapper,
            namespace=o.default_namespace,
            field_manager=o.field_manager,
            timeout=o.timeout,
        )
        return helm_hooks.run_hooks(run, hooks, event=event)

    def _store(self, previous: inventory.Inventory, new: inventory.Inventory) -> inventory.Inventory:
        o = self.options
        return record.store(
            self.kube, namespace=o.namespace, name=o.name, previous=previous, new=new, field_manager=o.field_manager
        )
