"""Staged server-side apply of a plan.

Order matters: a custom resource cannot be created before its CRD is Established, nor a
namespaced object before its Namespace exists. So stages run one after another (CRDs,
Namespaces, other cluster-scoped objects, namespaced objects) and objects inside a
stage are applied concurrently over the one shared connection pool. A stage with a
failure stops the sync: later stages would mostly fail the same way, and nothing is
pruned after a failed apply.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube import ssa
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.sync.changeset import Action, Effect
from reconciler.sync.objects import ApplyStage
from reconciler.sync.plan import Item, Plan, comparable
from reconciler.sync.preflight import dry_run, rejected
from reconciler.sync.wait import wait_crds_established, wait_gone, wait_kinds_served

_WRITES = (Action.CREATE, Action.CONFIGURE)


@dataclass
class ObjectResult:
    """What applying one object came to (``error`` says why when ``result`` is FAILED)."""

    item: Item
    result: Effect
    error: str = ""
    live: dict[str, Any] | None = None


@dataclass
class ApplyReport:
    outcomes: list[ObjectResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, kw_only=True)
class _Applier:
    """One plan's apply: the connection and the settings every object and stage shares."""

    kube: Kube
    mapper: RestMapper
    owner: str
    field_manager: str
    concurrency: int  # objects applied at once within a stage
    timeout: float  # seconds to wait for a deletion, a CRD or a kind to be served

    def one(self, item: Item) -> ObjectResult:
        """Apply one object (deleting it first when it must be recreated)."""
        assert item.desired is not None
        try:
            if item.recreate and not self._delete_for_recreate(item):
                return ObjectResult(
                    item, Effect.FAILED, f"{item.oid}: still present {self.timeout:.0f}s after deletion"
                )
            applied = ssa.apply(self.kube, item.desired, mapper=self.mapper, field_manager=self.field_manager)
        except KubeError as e:
            why = rejected(item, e) if item.undry else None  # what its dry run would have said
            return ObjectResult(item, Effect.FAILED, why or f"{item.oid} ({item.source}): {e.reason}: {e.message}")
        except (UnreachableError, UnknownKindError) as e:
            return ObjectResult(item, Effect.FAILED, f"{item.oid} ({item.source}): {e}")
        if item.undry and comparable(item.live) == comparable(applied.live):
            item.action = Action.UNCHANGED  # its dry run would have found it so: the counts agree
            return ObjectResult(item, Effect.UNCHANGED, live=applied.live)
        if item.recreate:
            return ObjectResult(item, Effect.RECREATED, live=applied.live)
        if applied.created:
            return ObjectResult(item, Effect.CREATED, live=applied.live)
        return ObjectResult(item, Effect.ADOPTED if item.adopt else Effect.CONFIGURED, live=applied.live)

    def _delete_for_recreate(self, item: Item) -> bool:
        """Delete the live object (only ours are recreated) and wait until it is gone."""
        assert item.desired is not None
        assert item.live is not None  # only objects already labelled ours are recreated
        res = self.mapper.find(item.desired["apiVersion"], item.desired["kind"])
        uid = item.live["metadata"]["uid"]
        ssa.delete(self.kube, item.desired, mapper=self.mapper, propagation="Foreground", uid=uid)
        return wait_gone(self.kube, res.object_path(item.oid.name, item.oid.namespace or None), self.timeout)

    def check_deferred(self, deferred: list[Item]) -> list[str]:
        """Objects whose Namespace or CRD came with this sync could not be validated up front;
        their prerequisites exist now, so check them before the first write of their stage."""
        try:
            missing = wait_kinds_served(self.mapper, deferred, self.timeout)
        except (KubeError, UnreachableError) as e:
            missing = [str(e)]
        if missing:
            return [f"kinds not served after {self.timeout:.0f}s: {', '.join(missing)}"]

        def check(i: Item) -> str | None:
            return dry_run(
                self.kube, i, mapper=self.mapper, owner=self.owner, field_manager=self.field_manager, want_diff=False
            )

        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return [e for e in pool.map(check, deferred) if e]

    def crds_established(self, items: list[Item]) -> list[str]:
        """After the CRD stage: wait until they are Established and their kinds are served."""
        try:
            stuck = wait_crds_established(self.kube, [i.oid.name for i in items], self.timeout)
            self.mapper.refresh()  # their kinds are served now
        except (KubeError, UnreachableError) as e:
            stuck = [str(e)]
        if stuck:
            return [f"CustomResourceDefinition not Established after {self.timeout:.0f}s: {', '.join(stuck)}"]
        return []


def apply_plan(
    kube: Kube,
    p: Plan,
    *,
    mapper: RestMapper,
    owner: str,
    field_manager: str = ssa.FIELD_MANAGER,
    concurrency: int = 8,
    timeout: float = 300.0,
    progress: Callable[[ObjectResult], None] | None = None,
) -> ApplyReport:
    """Apply every create/configure of ``p`` stage by stage; stop at the first stage with an error."""
    applier = _Applier(
        kube=kube, mapper=mapper, owner=owner, field_manager=field_manager, concurrency=concurrency, timeout=timeout
    )
    report = ApplyReport()
    for stage in ApplyStage:
        items = [i for i in p.items if i.stage is stage and i.action in _WRITES]
        if not items:
            continue
        deferred = [i for i in items if i.deferred]
        if deferred:
            report.errors.extend(applier.check_deferred(deferred))
            if report.errors:
                break
            items = [i for i in items if i.action in _WRITES]
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for out in pool.map(applier.one, items):
                report.outcomes.append(out)
                if out.error:
                    report.errors.append(out.error)
                if progress:
                    progress(out)
        if not report.errors and stage is ApplyStage.CRDS:
            report.errors.extend(applier.crds_established(items))
        if report.errors:
            break
    done = {out.item.oid for out in report.outcomes}
    for item in p.items:
        if item.action in (Action.UNCHANGED, Action.SKIP) and item.desired is not None and item.oid not in done:
            result = Effect.UNCHANGED if item.action is Action.UNCHANGED else Effect.SKIPPED
            report.outcomes.append(ObjectResult(item, result))
    return report
