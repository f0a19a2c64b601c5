"""gitsync/outcome.py: each way a reconcile ends, written as status, Event, metrics (fakes, no API server)."""

from __future__ import annotations

from typing import Any

import pytest
from pipeline_fakes import REVISION, Written, gitsync, oid

from reconciler.gitsync.errors import (
    AccessDeniedError,
    ClusterFailedError,
    DependencyNotReadyError,
    SourceFailedError,
    TargetRefusedError,
)
from reconciler.gitsync.outcome import Outcomes, Success
from reconciler.gitsync.results import Stage
from reconciler.kube.client import UnreachableError
from reconciler.report import conditions as cond
from reconciler.report.metrics import Metrics


def setup() -> tuple[Outcomes, Written, Metrics]:
    written, metrics = Written(), Metrics()
    return Outcomes(patch_status=written.patch_status, events=written, metrics=metrics), written, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"namespace": "team", "name": "apps", **labels})


def condition(obj: dict[str, Any], type_: str) -> tuple[str, str] | None:
    c = cond.get(obj["status"]["conditions"], type_)
    return (c["status"], c["reason"]) if c else None


RECONCILING = [{"type": "Reconciling", "status": "True", "reason": "Progressing"}]


def test_a_failure_is_ready_false_one_warning_event_a_failure_count_and_the_attempted_revision() -> None:
    outcomes, written, metrics = setup()
    obj = gitsync(conditions=RECONCILING)
    err = SourceFailedError("no such branch", stage=Stage.SOURCE)
    out = outcomes.failed(obj, err, message="GitSync team/apps: fetch failed: x", revision=REVISION, extra={"k": 1})
    assert (out.ok, out.stalled, out.waiting, out.revision) == (False, False, False, REVISION)
    assert condition(obj, cond.READY) == ("False", "ArtifactFailed")
    assert condition(obj, cond.RECONCILING) is None
    assert condition(obj, cond.STALLED) is None
    assert written.patches[-1]["lastAttemptedRevision"] == REVISION
    assert written.patches[-1]["observedGeneration"] == 3
    assert written.patches[-1]["k"] == 1
    assert written.events == [("Warning", "SourceFailed", "GitSync team/apps: fetch failed: x")]
    assert sample(metrics, "reconciler_reconcile_total", result="failure") == 1
    assert sample(metrics, "reconciler_gitsync_ready") == 0
    assert sample(metrics, "reconciler_gitsync_stalled") == 0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AccessDeniedError("not allowed", stage=Stage.ADMIT), "AccessDenied"),
        (TargetRefusedError("cluster prod not allowed", stage=Stage.TARGET), "TargetNotAllowed"),
    ],
)
def test_a_stalled_failure_sets_stalled_until_the_spec_changes(error: Any, reason: str) -> None:
    outcomes, written, metrics = setup()
    obj = gitsync()
    out = outcomes.failed(obj, error, message="m", revision="", extra={})
    assert out.stalled
    assert condition(obj, cond.STALLED) == ("True", reason)
    assert "lastAttemptedRevision" not in written.patches[-1]
    assert written.events == [("Warning", "SyncFailed", "m")]
    assert sample(metrics, "reconciler_gitsync_stalled") == 1


def test_waiting_for_a_dependency_is_not_a_failure_no_event_no_failure_count() -> None:
    outcomes, written, metrics = setup()
    obj = gitsync()
    err = DependencyNotReadyError("waiting for dependency GitSync team/crds to be Ready", stage=Stage.ADMIT)
    out = outcomes.failed(obj, err, message="m", revision="", extra={})
    assert (out.ok, out.waiting) == (False, True)
    assert condition(obj, cond.READY) == ("False", "DependencyNotReady")
    assert written.events == []
    assert sample(metrics, "reconciler_reconcile_total", result="failure") is None
    assert sample(metrics, "reconciler_gitsync_ready") == 0


def test_a_success_that_changed_something_is_ready_one_synced_and_one_pruned_event() -> None:
    outcomes, written, metrics = setup()
    obj = gitsync(conditions=[*RECONCILING, {"type": "Stalled", "status": "True", "reason": "X"}])
    done = Success(
        revision=REVISION,
        message=f"Applied revision {REVISION}: 1 create",
        inventory=[{"id": "app_a__ConfigMap", "v": "v1"}],
        managed=1,
        changed=True,
        pruned=[oid("old")],
        healthy=True,
    )
    out = outcomes.succeeded(obj, done, extra={"lastPlan": {"create": 1}})
    assert (out.ok, out.revision) == (True, REVISION)
    assert condition(obj, cond.READY) == ("True", "ReconciliationSucceeded")
    assert condition(obj, cond.HEALTHY) == ("True", "Succeeded")
    assert condition(obj, cond.RECONCILING) is None
    assert condition(obj, cond.STALLED) is None
    status = written.patches[-1]
    assert (status["lastAppliedRevision"], status["lastAttemptedRevision"]) == (REVISION, REVISION)
    assert status["inventory"] == done.inventory
    assert status["lastPlan"] == {"create": 1}
    assert written.events == [
        ("Normal", "Synced", done.message),
        ("Normal", "Pruned", f"revision {REVISION}: pruned ConfigMap/app/old"),
    ]
    assert sample(metrics, "reconciler_reconcile_total", result="success") == 1
    assert sample(metrics, "reconciler_gitsync_ready") == 1
    assert sample(metrics, "reconciler_managed_objects") == 1
    assert sample(metrics, "reconciler_applied_revision_info", revision=REVISION) == 1


def test_a_success_that_changed_nothing_writes_status_but_no_event() -> None:
    outcomes, written, _ = setup()
    obj = gitsync()
    done = Success(revision=REVISION, message="m", inventory=[], managed=0, changed=False)
    outcomes.succeeded(obj, done, extra={})
    assert condition(obj, cond.READY) == ("True", "ReconciliationSucceeded")
    assert condition(obj, cond.HEALTHY) is None
    assert written.events == []


def test_nothing_changed_under_the_path_is_ready_at_the_new_revision_without_an_event() -> None:
    outcomes, written, metrics = setup()
    obj = gitsync(conditions=RECONCILING)
    out = outcomes.unchanged(obj, revision=REVISION, extra={})
    assert out.ok
    ready = cond.get(obj["status"]["conditions"], cond.READY)
    assert ready is not None
    assert ready["message"] == f"Applied revision {REVISION}: nothing changed under this GitSync's path"
    assert written.patches[-1]["lastAppliedRevision"] == REVISION
    assert written.events == []
    assert sample(metrics, "reconciler_reconcile_total", result="success") == 1


def test_the_drift_warn_no_op_only_ends_reconciling() -> None:
    outcomes, written, metrics = setup()
    obj = gitsync(conditions=[*RECONCILING, {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}])
    out = outcomes.held(obj, revision=REVISION, drifted=2)
    assert (out.ok, out.revision) == (True, REVISION)
    assert written.patches == [
        {"conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}]}
    ]
    assert written.events == []
    assert sample(metrics, "reconciler_reconcile_total", result="success") is None


def test_policy_findings_are_one_warning_event_and_a_gauge_per_policy() -> None:
    outcomes, written, metrics = setup()
    obj = gitsync()
    lines = [f"ConfigMap/app/c{i}: bad" for i in range(10)]
    outcomes.violations(obj, lines, counts=[("no-bad", 12)], total=12)
    assert written.events == [("Warning", "PolicyViolation", "; ".join(lines) + " (and 2 more)")]
    assert sample(metrics, "reconciler_policy_violations", policy="no-bad") == 12
    outcomes.violations(obj, [], counts=[], total=0)
    assert sample(metrics, "reconciler_policy_violations", policy="no-bad") is None, "old series dropped"
    assert len(written.events) == 1


def test_a_failure_the_api_server_will_not_store_is_still_logged_counted_and_written_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The API server that failed a sync (unreachable) usually refuses its status too: the one
    ERROR line still names the reason and the revision, the metrics still say not Ready, and
    the status counts as unwritten, so the next attempt writes it (found by the crash suite:
    before, the status write's own error replaced the sync's in the log and the metrics)."""
    outcomes, written, metrics = setup()
    refused = {"on": True}

    def patch_status(obj: dict[str, Any], status: dict[str, Any]) -> None:
        if refused["on"]:
            raise UnreachableError("PATCH https://api/status: cannot reach the API server: refused")
        written.patch_status(obj, status)

    outcomes = Outcomes(patch_status=patch_status, events=written, metrics=metrics)
    obj = gitsync(conditions=[{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}])
    err = ClusterFailedError("cannot reach the API server", stage=Stage.APPLY)
    with caplog.at_level("WARNING", logger="reconciler.gitsync"):
        out = outcomes.failed(obj, err, message="GitSync team/apps: apply failed", revision=REVISION, extra={})
    assert not out.ok
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [(r.getMessage(), r.reason, r.revision) for r in errors] == [  # type: ignore[attr-defined]
        ("GitSync team/apps: apply failed", "ReconciliationFailed", REVISION)
    ]
    assert any("status not written" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert sample(metrics, "reconciler_gitsync_ready") == 0
    assert sample(metrics, "reconciler_reconcile_total", result="failure") == 1
    assert "lastAttemptedRevision" not in obj["status"], "not stored: not shown as stored"
    refused["on"] = False
    outcomes.failed(obj, err, message="GitSync team/apps: apply failed", revision=REVISION, extra={})
    assert written.patches
    assert written.patches[-1]["lastAttemptedRevision"] == REVISION
    assert condition(obj, cond.READY) == ("False", "ReconciliationFailed")
