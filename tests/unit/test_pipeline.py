"""The pipeline's step order and its failure mapping, with fakes: no API server, no git.

Each step failing in turn: which error (reason, Event reason, Stalled), where the sync stopped,
and which later steps never ran (nothing written after a render or policy error, nothing pruned
after a failed apply, the inventory still recorded, the revision advanced only on success).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_fakes import OLD, REVISION, FakeCluster, FakeSteps, Written, cm, gitsync, oid

from reconciler.gitsync.errors import (
    ClusterFailedError,
    HealthCheckFailedError,
    PolicyFailedError,
    PolicyViolationError,
    RenderFailedError,
    SourceFailedError,
    StageFailedError,
    StepError,
)
from reconciler.gitsync.outcome import Outcomes
from reconciler.gitsync.pipeline import sync_revision
from reconciler.gitsync.results import Settled, Stage, SyncOptions, SyncResult
from reconciler.policy import PolicySet, load_policies
from reconciler.report import conditions as cond
from reconciler.report.metrics import Metrics
from reconciler.sync import inventory
from reconciler.sync import prune as pruning
from reconciler.sync.changeset import Action

ALL = ["fetch", "render", "policies", "hold", "report", "load", "plan", "preflight", "write_ahead", "apply", "prune"]
WRITES = {"write_ahead", "apply", "prune", "record"}


def run(steps: FakeSteps, cluster: FakeCluster, **options: object) -> SyncResult:
    opts = SyncOptions("apps", "team", **options)
    return sync_revision(steps=steps, cluster=cluster, options=opts)


def test_a_sync_runs_every_step_once_in_order_and_records_the_new_revision() -> None:
    calls: list[str] = []
    cluster = FakeCluster(calls)
    res = run(FakeSteps(calls), cluster, wait=True)
    assert calls == [*ALL, "record", "health"]
    assert (res.ok, res.stage, res.settled, res.revision) == (True, Stage.DONE, None, REVISION)
    assert cluster.recorded == REVISION
    assert res.inventory is not None
    assert res.inventory.revision == REVISION


# step that fails -> (error, reason, Event reason, stalled, stage, the steps that ran)
FAILURES = [
    ("fetch", SourceFailedError, "ArtifactFailed", "SourceFailed", Stage.SOURCE, ["fetch"]),
    ("render", RenderFailedError, "BuildFailed", "RenderFailed", Stage.RENDER, ["fetch", "render"]),
    ("policies", PolicyFailedError, "PolicyFailed", "SyncFailed", Stage.POLICY, ["fetch", "render", "policies"]),
    ("plan", StageFailedError, "ReconciliationFailed", "SyncFailed", Stage.PLAN, ALL[:7]),
    ("preflight", StageFailedError, "ReconciliationFailed", "SyncFailed", Stage.PREFLIGHT, ALL[:8]),
    ("write_ahead", StageFailedError, "ReconciliationFailed", "SyncFailed", Stage.APPLY, ALL[:9]),
    ("apply", StageFailedError, "ReconciliationFailed", "SyncFailed", Stage.APPLY, [*ALL[:10], "record"]),
    ("prune", StageFailedError, "ReconciliationFailed", "SyncFailed", Stage.PRUNE, [*ALL, "record"]),
    (
        "health",
        HealthCheckFailedError,
        "HealthCheckFailed",
        "HealthCheckFailed",
        Stage.HEALTH,
        [*ALL, "record", "health"],
    ),
]


@pytest.mark.parametrize(("step", "error", "reason", "event", "stage", "ran"), FAILURES, ids=[f[0] for f in FAILURES])
def test_each_failing_step_raises_its_one_error_and_stops_the_sync(
    step: str, error: type[StepError], reason: str, event: str, stage: Stage, ran: list[str]
) -> None:
    calls: list[str] = []
    steps = FakeSteps(calls, fail=step)
    cluster = FakeCluster(calls, errors={step: [f"{step} went wrong", "and again"]}, unhealthy=step == "health")
    with pytest.raises(StepError) as e:
        run(steps, cluster, wait=True)
    assert type(e.value) is error
    assert (e.value.reason, e.value.event_reason, e.value.stalled, e.value.stage) == (reason, event, False, stage)
    assert calls == ran, "no step after the failing one ran"
    if stage in (Stage.SOURCE, Stage.RENDER, Stage.POLICY, Stage.PLAN, Stage.PREFLIGHT):
        assert not WRITES & set(calls), "nothing written"
    if stage is Stage.APPLY:
        assert "prune" not in calls, "nothing pruned after a failed apply"
    if "record" in calls:
        expected = REVISION if stage is Stage.HEALTH else OLD
        assert cluster.recorded == expected, "the revision advances only when apply and prune succeeded"

    # ...and what the people watching see: Ready False with that reason, one Warning Event.
    written, metrics = Written(), Metrics()
    obj = gitsync(conditions=[{"type": "Reconciling", "status": "True"}])
    outcomes = Outcomes(patch_status=written.patch_status, events=written, metrics=metrics)
    out = outcomes.failed(obj, e.value, message=f"GitSync team/apps: {e.value.message}", revision="", extra={})
    ready = cond.get(obj["status"]["conditions"], cond.READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert cond.get(obj["status"]["conditions"], cond.RECONCILING) is None
    assert cond.get(obj["status"]["conditions"], cond.STALLED) is None
    assert [(t, r) for t, r, _ in written.events] == [("Warning", event)]
    assert (out.ok, out.stalled, out.waiting) == (False, False, False)


def test_a_stage_error_message_names_the_stage_and_counts_the_rest() -> None:
    calls: list[str] = []
    with pytest.raises(StageFailedError) as e:
        run(FakeSteps(calls), FakeCluster(calls, errors={"preflight": ["ConfigMap/app/a: invalid", "b", "c"]}))
    assert e.value.message == "validation failed: ConfigMap/app/a: invalid (and 2 more)"
    assert e.value.result.plan is not None, "the plan so far travels with the error"


def test_an_api_server_failure_is_one_typed_error_and_nothing_is_written() -> None:
    calls: list[str] = []
    with pytest.raises(ClusterFailedError) as e:
        run(FakeSteps(calls), FakeCluster(calls, raises="load"))
    assert e.value.reason == "ReconciliationFailed"
    assert e.value.result is None
    assert calls == ALL[:6]


def test_an_inventory_that_cannot_be_recorded_after_a_failed_apply_is_reported_with_it() -> None:
    calls: list[str] = []
    cluster = FakeCluster(calls, errors={"apply": ["ConfigMap/app/a: apply failed"], "record": ["conflict"]})
    with pytest.raises(StageFailedError) as e:
        run(FakeSteps(calls), cluster)
    assert e.value.errors == ["ConfigMap/app/a: apply failed", "conflict"]
    assert e.value.stage is Stage.APPLY


def test_an_inventory_that_cannot_be_recorded_fails_a_sync_that_otherwise_succeeded() -> None:
    calls: list[str] = []
    with pytest.raises(StageFailedError) as e:
        run(FakeSteps(calls), FakeCluster(calls, errors={"record": ["changed since this sync read it"]}))
    assert (e.value.stage, e.value.errors) == (Stage.PRUNE, ["changed since this sync read it"])
    assert "health" not in calls


def test_the_mass_prune_guard_stops_the_sync_before_anything_is_written() -> None:
    calls: list[str] = []
    stored = [inventory.Entry(oid(n), "v1", "", "") for n in ("x", "y")]
    cluster = FakeCluster(calls, stored=stored, gone=["x", "y"])
    with pytest.raises(StageFailedError) as e:
        run(FakeSteps(calls, manifests=[]), cluster)
    assert e.value.stage is Stage.GUARD
    assert "refusing to prune all 2 objects" in e.value.errors[0]
    assert not WRITES & set(calls)


def test_with_prune_off_nothing_is_pruned_and_the_guard_does_not_apply() -> None:
    calls: list[str] = []
    cluster = FakeCluster(calls, stored=[inventory.Entry(oid("x"), "v1", "", "")], gone=["x"])
    res = run(FakeSteps(calls, manifests=[]), cluster, prune=False, guard=pruning.Guard())
    assert res.ok
    assert res.plan is not None
    assert [i.action for i in res.plan.items] == [Action.SKIP]
    assert res.pruned is not None
    assert res.pruned.deleted == []


def test_a_dry_run_plans_and_validates_and_writes_nothing() -> None:
    calls: list[str] = []
    res = run(FakeSteps(calls), FakeCluster(calls), dry_run=True)
    assert (res.ok, res.stage) == (True, Stage.DONE)
    assert calls == ALL[:8]


def test_nothing_changed_under_the_path_ends_the_sync_before_policy_and_plan() -> None:
    calls: list[str] = []
    res = run(FakeSteps(calls, manifests=None), FakeCluster(calls))
    assert (res.ok, res.settled, res.revision) == (True, Settled.UNCHANGED, REVISION)
    assert calls == ["fetch", "render"]


def test_a_held_revision_is_left_as_it_is_without_evaluating_policies() -> None:
    calls: list[str] = []
    res = run(FakeSteps(calls, held=True), FakeCluster(calls))
    assert (res.ok, res.settled) == (True, Settled.HELD)
    assert calls == ["fetch", "render", "policies", "hold"]


def _policies(tmp_path: Path, action: str) -> PolicySet:
    vap = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "no-bad"},
        "spec": {
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["*"]}
                ]
            },
            "validations": [{"expression": "object.metadata.name != 'bad'", "message": "bad name"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "no-bad"},
        "spec": {"policyName": "no-bad", "validationActions": [action]},
    }
    (tmp_path / "policies.yaml").write_text(yaml.safe_dump_all([vap, binding]))
    return load_policies(tmp_path)


def test_a_denied_revision_is_reported_then_refused_before_the_inventory_is_read(tmp_path: Path) -> None:
    calls: list[str] = []
    steps = FakeSteps(calls, manifests=[cm("bad")], policy_set=_policies(tmp_path, "Deny"))
    with pytest.raises(PolicyViolationError) as e:
        run(steps, FakeCluster(calls))
    assert (e.value.reason, e.value.event_reason, e.value.stage) == ("PolicyViolation", "PolicyViolation", Stage.POLICY)
    assert e.value.message.startswith("denied by policy, nothing applied or pruned: ")
    assert [v.policy for v in steps.reported] == ["no-bad"]
    assert calls == ALL[:5], "nothing planned, applied or pruned"


@pytest.mark.parametrize("mode", ["audit", "off"])
def test_audit_reports_and_off_skips_a_deny_and_both_go_on(tmp_path: Path, mode: str) -> None:
    calls: list[str] = []
    steps = FakeSteps(calls, manifests=[cm("bad")], policy_set=_policies(tmp_path, "Deny"))
    res = run(steps, FakeCluster(calls), policy_mode=mode)
    assert res.ok
    assert len(res.violations) == (1 if mode == "audit" else 0)
    assert calls == [*ALL, "record"]
