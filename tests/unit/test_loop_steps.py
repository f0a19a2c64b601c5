"""The controller loop's steps that are pure bookkeeping, tested without an API server:
when a GitSync is due again after each kind of result, the scheduler's handling of a request
that arrives while the GitSync runs, and the health probes' answers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reconciler.gitsync import loop, servers
from reconciler.gitsync.reconcile import ReconcileResult, SyncState
from reconciler.gitsync.schedule import Scheduler
from reconciler.gitsync.spec import DriftMode, parse
from reconciler.policy import PolicyMode

SPEC = parse(
    {
        "metadata": {"name": "g", "namespace": "t"},
        "spec": {"source": {"git": {"url": "https://x/r.git"}}, "interval": "10m", "retryInterval": "30s"},
    }
)


def test_success_is_due_after_the_interval_with_jitter_and_resets_failures() -> None:
    state = SyncState(failures=3)
    delays = [loop.Controller._next_delay(SPEC, ReconcileResult(ok=True), state) for _ in range(50)]
    assert all(540 <= d <= 660 for d in delays if d is not None), delays
    assert len(set(delays)) > 1, "jittered, so a fleet does not fetch in lockstep"
    assert state.failures == 0


def test_failures_back_off_exponentially_up_to_the_interval() -> None:
    state = SyncState()
    delays = [loop.Controller._next_delay(SPEC, ReconcileResult(ok=False), state) for _ in range(7)]
    assert delays == [30, 60, 120, 240, 480, 600, 600]
    assert state.failures == 7


def test_stalled_waits_for_a_change_and_a_dependency_is_polled_briefly() -> None:
    state = SyncState()
    assert loop.Controller._next_delay(SPEC, ReconcileResult(ok=False, stalled=True), state) is None
    assert loop.Controller._next_delay(SPEC, ReconcileResult(ok=False, waiting=True), state) == 10
    assert state.failures == 0, "neither counts as a failure to back off from"


def test_a_request_while_running_runs_it_again_once_it_finishes() -> None:
    stop = threading.Event()
    sched = Scheduler(workers=2, per_namespace=2, stop=stop, active=lambda: True)
    sched.schedule(("a", "1"), 0)
    assert sched.next_due() == ("a", "1")
    sched.schedule(("a", "1"), 0)  # a new requested-at while the worker runs it
    sched.schedule(("a", "1"), 5)  # a later due time while running is not recorded
    sched.done(("a", "1"), 600)
    assert sched.next_due() == ("a", "1"), "due at once, not after the 600s the run returned"


def test_an_inactive_replica_hands_out_nothing() -> None:
    stop = threading.Event()
    sched = Scheduler(workers=1, per_namespace=1, stop=stop, active=lambda: False)
    sched.schedule(("a", "1"), 0)
    assert sched.next_due() is None


def _probe(app: Any, path: str) -> tuple[str, bytes]:
    got: list[str] = []
    body = b"".join(app({"PATH_INFO": path}, lambda status, headers: got.append(status)))
    return got[0], body


@pytest.mark.parametrize(
    ("ready", "path", "status", "body"),
    [
        (False, "/healthz", "200 OK", b"ok\n"),
        (True, "/readyz", "200 OK", b"ok\n"),
        (False, "/readyz", "503 Service Unavailable", b"not ready\n"),
        (True, "/metrics", "404 Not Found", b"not found\n"),
    ],
)
def test_health_probes(ready: bool, path: str, status: str, body: bytes) -> None:
    assert _probe(servers.health_app(lambda: ready), path) == (status, body)


def test_spec_modes_are_enums_with_the_spec_strings() -> None:
    assert (SPEC.policy_mode, SPEC.drift_mode) == (PolicyMode.ENFORCE, DriftMode.CORRECT)
    assert [str(m) for m in PolicyMode] == ["enforce", "audit", "off"]
    assert [str(m) for m in DriftMode] == ["correct", "warn", "off"]
