"""Pushes queued in memory (push.QueuedPushes): which request a reconcile answers, and who queues."""

from __future__ import annotations

from typing import Any

from reconciler.gitsync.push import QueuedPushes

KEY = ("apps", "web")
ANN = "gitops.reconciler.dev/requested-at"


def gitsync(annotation: str | None = None, handled: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"namespace": "apps", "name": "web"}
    if annotation:
        md["annotations"] = {ANN: annotation}
    return {"metadata": md, "status": {"lastHandledRequestedAt": handled} if handled else {}}


def test_a_queued_push_is_answered_once_and_scheduled_at_once() -> None:
    scheduled: list[tuple[str, str]] = []
    q = QueuedPushes(may_take=lambda key: True, schedule=scheduled.append)
    assert q.take(KEY, "webhook:1")
    assert scheduled == [KEY]
    assert q.request_of(KEY, gitsync()) == "webhook:1"
    assert q.request_of(KEY, gitsync()) is None, "answered once"


def test_an_unhandled_requested_at_goes_first_and_the_push_rides_along() -> None:
    q = QueuedPushes(may_take=lambda key: True, schedule=lambda key: None)
    q.take(KEY, "webhook:2")
    assert q.request_of(KEY, gitsync(annotation="manual-7", handled="manual-6")) == "manual-7"
    assert q.request_of(KEY, gitsync(annotation="manual-7", handled="manual-7")) == "manual-7", (
        "the push was taken by that reconcile; a handled annotation is what the reconcile sees"
    )


def test_a_handled_annotation_yields_to_a_new_push() -> None:
    q = QueuedPushes(may_take=lambda key: True, schedule=lambda key: None)
    q.take(KEY, "webhook:3")
    assert q.request_of(KEY, gitsync(annotation="manual-7", handled="manual-7")) == "webhook:3"


def test_a_replica_that_does_not_reconcile_it_leaves_it_to_the_annotation() -> None:
    scheduled: list[tuple[str, str]] = []
    q = QueuedPushes(may_take=lambda key: False, schedule=scheduled.append)
    assert not q.take(KEY, "webhook:4")
    assert scheduled == []
    assert q.request_of(KEY, gitsync()) is None
