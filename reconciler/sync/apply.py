"""Staged server-side apply of a plan.

Order matters: a custom resource cannot be created before its CRD is Established, nor a
namespaced object before its Namespace exists. So stages run one after another (CRDs,
Namespaces, other cluster-scoped objects, namespaced objects) and objects inside a
stage are applied concurrently over the one shared connection pool. A stage with a
failure stops the sync: later stages would mostly fail the same way, and nothing is
pruned after a failed apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube import paths, ssa
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.kube.ssa import FIELD_MANAGER
from reconciler.sync.objects import Stage
from reconciler.sync.plan import Action, Item, Plan, dry_run


@dataclass
class Outcome:
    item: Item
    result: str  # "created" | "configured" | "adopted" | "recreated" | "unchanged" | "skipped" | "failed"
    error: str = ""
    live: dict[str, Any] | None = None


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _established(crd: dict[str, Any]) -> bool:
    conds = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


def wait_crds_established(kube: Kube, names: list[str], timeout: float) -> list[str]:
    """Wait until the API server serves the CRDs; returns the names that never became Established."""
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            crd = kube.get_or_none(
                paths.api_path(
                    group="apiextensions.k8s.io", version="v1", resource="customresourcedefinitions", name=name
                )
            )
            if crd is not None and _established(crd):
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    return sorted(pending)


def _wait_gone(kube: Kube, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kube.get_or_none(path) is None:
            return True
        time.sleep(0.2)
    return False


def wait_kinds_served(mapper: RestMapper, items: list[Item], timeout: float) -> list[str]:
    """Wait until discovery serves the kinds of deferred custom resources.

    An Established CRD is not always in discovery at once (a CRD that gained a version was
    Established before), so poll rather than refresh once and fail.
    """
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for i in items:
            assert i.desired is not None
            try:
                mapper.find(i.desired["apiVersion"], i.desired["kind"])
            except UnknownKindError:
                missing.append(f"{i.desired['kind']} in {i.desired['apiVersion']}")
        if not missing or time.monotonic() >= deadline:
            return sorted(set(missing))
        time.sleep(0.5)
        mapper.refresh()


def apply_plan(
    kube: Kube,
    mapper: RestMapper,
    p: Plan,
    *,
    owner: str,
    field_manager: str = FIELD_MANAGER,
    concurrency: int = 8,
    timeout: float = 300.0,
    progress: Callable[[Outcome], None] | None = None,
) -> ApplyReport:
    report = ApplyReport()

    def one(item: Item) -> Outcome:
        assert item.desired is not None
        try:
            if item.recreate:
                assert item.live is not None  # only objects already labelled ours are recreated
                res = mapper.find(item.desired["apiVersion"], item.desired["kind"])
                uid = item.live["metadata"]["uid"]
                ssa.delete(kube, item.desired, mapper=mapper, propagation="Foreground", uid=uid)
                path = res.object_path(item.oid.name, item.oid.namespace or None)
                if not _wait_gone(kube, path, timeout):
                    return Outcome(item, "failed", f"{item.oid}: still present {timeout:.0f}s after deletion")
            applied = ssa.apply(kube, item.desired, mapper=mapper, field_manager=field_manager)
            live, created = applied.live, applied.created
        except KubeError as e:
            return Outcome(item, "failed", f"{item.oid} ({item.source}): {e.reason}: {e.message}")
        except (UnreachableError, UnknownKindError) as e:
            return Outcome(item, "failed", f"{item.oid} ({item.source}): {e}")
        if item.recreate:
            return Outcome(item, "recreated", live=live)
        return Outcome(item, "created" if created else ("adopted" if item.adopt else "configured"), live=live)

    for stage in Stage:
        items = [i for i in p.items if i.stage is stage and i.action in (Action.CREATE, Action.CONFIGURE)]
        if not items:
            continue
        # Objects whose Namespace or CRD came with this sync could not be validated up front;
        # their prerequisites exist now, so check them before the first write of this stage.
        deferred = [i for i in items if i.deferred]
        if deferred:
            try:
                missing = wait_kinds_served(mapper, deferred, timeout)
            except (KubeError, UnreachableError) as e:
                missing = [str(e)]
            if missing:
                report.errors.append(f"kinds not served after {timeout:.0f}s: {', '.join(missing)}")
                break
            with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
                errs = pool.map(
                    lambda i: dry_run(kube, mapper, i, owner=owner, field_manager=field_manager, want_diff=False),
                    deferred,
                )
                report.errors.extend(e for e in errs if e)
            if report.errors:
                break
            items = [i for i in items if i.action in (Action.CREATE, Action.CONFIGURE)]
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for out in pool.map(one, items):
                report.outcomes.append(out)
                if out.error:
                    report.errors.append(out.error)
                if progress:
                    progress(out)
        if report.errors:
            break
        if stage is Stage.CRDS:
            try:
                stuck = wait_crds_established(kube, [i.oid.name for i in items], timeout)
                mapper.refresh()  # their kinds are served now
            except (KubeError, UnreachableError) as e:
                stuck = [str(e)]
            if stuck:
                report.errors.append(
                    f"CustomResourceDefinition not Established after {timeout:.0f}s: {', '.join(stuck)}"
                )
                break
    for item in p.items:
        if item.action in (Action.UNCHANGED, Action.SKIP) and item.desired is not None:
            report.outcomes.append(Outcome(item, "unchanged" if item.action is Action.UNCHANGED else "skipped"))
    return report
