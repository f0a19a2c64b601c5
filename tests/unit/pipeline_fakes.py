"""Fakes for the pipeline's two halves and for what an outcome is written to: plain data, no API server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import policy
from reconciler.gitsync.errors import ClusterFailedError, PolicyFailedError, RenderFailedError, SourceFailedError
from reconciler.gitsync.helmrender import HelmRender
from reconciler.gitsync.rendered import Rendered
from reconciler.gitsync.results import Stage, SyncResult
from reconciler.render.helm import Hook
from reconciler.render.manifests import Manifest
from reconciler.source.artifact import Artifact
from reconciler.sync import health, inventory
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ApplyReport, ObjectResult
from reconciler.sync.changeset import Action, Effect
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item, Plan

REVISION = "main@sha1:" + "1" * 40
OLD = "main@sha1:" + "0" * 40


def cm(name: str) -> Manifest:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "app"}}
    return Manifest(obj, f"{name}.yaml", 1)


def oid(name: str) -> ObjectId:
    return ObjectId("", "ConfigMap", "app", name)


@dataclass
class FakeSteps:
    """The caller's half; ``fail`` names the one step that raises."""

    calls: list[str]
    manifests: list[Manifest] | None = field(default_factory=lambda: [cm("a")])
    fail: str = ""
    policy_set: policy.PolicySet | None = None
    held: bool = False
    reported: list[policy.Violation] = field(default_factory=list)
    chart: HelmRender | None = None  # a chart's render (hooks); None: plain manifests

    def fetch(self) -> Artifact:
        self.calls.append("fetch")
        if self.fail == "fetch":
            raise SourceFailedError("no such branch", stage=Stage.SOURCE)
        return Artifact(revision=REVISION, path=Path())

    def render(self, artifact: Artifact) -> Rendered | None:
        self.calls.append("render")
        if self.fail == "render":
            raise RenderFailedError("bad YAML", stage=Stage.RENDER)
        if self.chart is not None:
            return Rendered(manifests=self.manifests or [], chart=self.chart)
        return None if self.manifests is None else Rendered(manifests=self.manifests)

    def policies(self) -> policy.PolicySet | None:
        self.calls.append("policies")
        if self.fail == "policies":
            raise PolicyFailedError("policies.yaml: bad", stage=Stage.POLICY)
        return self.policy_set

    def hold(self, revision: str) -> bool:
        self.calls.append("hold")
        return self.held

    def report(self, violations: Sequence[policy.Violation]) -> None:
        self.calls.append("report")
        self.reported = list(violations)


@dataclass
class FakeCluster:
    """The cluster's half: ``errors`` maps a step to what it finds; ``raises`` names one that blows up."""

    calls: list[str]
    errors: dict[str, list[str]] = field(default_factory=dict)
    raises: str = ""
    stored: list[inventory.Entry] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # inventory objects no longer in the revision
    recorded: str | None = None  # the revision the final inventory was recorded with
    unhealthy: bool = False

    def _call(self, step: str) -> list[str]:
        self.calls.append(step)
        if self.raises == step:
            raise ClusterFailedError("connection refused", stage=Stage.PLAN)
        return list(self.errors.get(step, []))

    def load(self) -> inventory.Inventory:
        self._call("load")
        return inventory.Inventory(OLD, {e.oid: e for e in self.stored}, "uid")

    def plan(self, manifests: Sequence[Manifest], previous: inventory.Inventory) -> Plan:
        errors = self._call("plan")
        items = [Item(oid(m.obj["metadata"]["name"]), Action.CREATE, m.file, desired=m.obj) for m in manifests]
        items += [Item(oid(n), Action.PRUNE, "inventory", live={"metadata": {"name": n}}) for n in self.gone]
        return Plan(items=[] if errors else items, errors=errors)

    def preflight(self, p: Plan, *, progress: Callable[[Item], None] | None) -> list[str]:
        return self._call("preflight")

    def write_ahead(self, previous: inventory.Inventory, p: Plan) -> tuple[inventory.Inventory, list[str]]:
        return previous, self._call("write_ahead")

    def apply(self, p: Plan, *, progress: Callable[[ObjectResult], None] | None) -> ApplyReport:
        errors = self._call("apply")
        outcomes = [ObjectResult(i, Effect.FAILED if errors else Effect.CREATED) for i in p.by_action(Action.CREATE)]
        return ApplyReport(outcomes=outcomes, errors=errors)

    def prune(self, p: Plan, *, progress: Callable[[Item, str], None] | None) -> pruning.PruneReport:
        errors = self._call("prune")
        return pruning.PruneReport(deleted=[] if errors else p.by_action(Action.PRUNE), errors=errors)

    def record(
        self, ahead: inventory.Inventory, p: Plan, *, res: SyncResult, revision: str
    ) -> tuple[inventory.Inventory | None, list[str]]:
        errors = self._call("record")
        self.recorded = revision
        return (None if errors else inventory.Inventory(revision, {}, "uid")), errors

    def health(self, items: Sequence[Item]) -> dict[ObjectId, health.Health]:
        self._call("health")
        state = health.State.FAILED if self.unhealthy else health.State.CURRENT
        return {i.oid: health.Health(state, "CrashLoopBackOff" if self.unhealthy else "") for i in items}

    def hooks(self, hooks: Sequence[Hook], *, event: str) -> list[str]:
        if not hooks:
            return []  # no chart hooks: not a step the plain pipeline shows
        names = ",".join(h.obj["metadata"]["name"] for h in hooks)
        return self._call(f"{event}:{names}")


@dataclass
class Written:
    """Where an outcome goes: status patches, Events (type, reason, note)."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        self.patches.append(status)

    def emit(self, regarding: dict[str, Any], type_: str, reason: str, note: str, action: str = "Reconcile") -> None:
        self.events.append((type_, reason, note))


def gitsync(**status: Any) -> dict[str, Any]:
    md = {"name": "apps", "namespace": "team", "generation": 3, "uid": "uid"}
    return {"metadata": md, "status": status}
