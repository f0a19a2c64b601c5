"""When a chart's hook is done: a Pod must succeed, a Job must complete, a deleted one failed."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.gitsync import hooks
from reconciler.sync.health import State


def pod(phase: str | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": phase} if phase else {}}


def job(condition: str | None) -> dict[str, Any]:
    conds = [{"type": condition, "status": "True", "reason": "x", "message": "y"}] if condition else []
    status: dict[str, Any] = {"conditions": conds, "startTime": "2026-01-01T00:00:00Z"}
    if condition == "Complete":
        status["succeeded"] = 1
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "generation": 1},
        "spec": {},
        "status": status,
    }


@pytest.mark.parametrize(
    ("live", "state"),
    [
        (pod("Succeeded"), State.CURRENT),
        (pod("Failed"), State.FAILED),
        (pod("Running"), State.IN_PROGRESS),
        (pod(None), State.IN_PROGRESS),
        (job("Complete"), State.CURRENT),
        (job("Failed"), State.FAILED),
        (job(None), State.IN_PROGRESS),
        (None, State.NOT_FOUND),
    ],
)
def test_a_hook_is_done_when_it_succeeded(live: dict[str, Any] | None, state: State) -> None:
    assert hooks._state(live).state is state
