"""Reconciling marks written only for reconciles that outlast ``after`` (gitsync/progress.py)."""

from __future__ import annotations

import threading
import time

from reconciler.gitsync.progress import DeferredMarks

KEY = ("team", "apps")


def test_a_verdict_within_the_delay_drops_the_mark_unwritten() -> None:
    written: list[str] = []
    marks = DeferredMarks(after=0.3)
    marks.defer(KEY, lambda: written.append("mark"))
    marks.settle(KEY)
    time.sleep(0.6)
    assert written == []


def test_a_long_reconcile_gets_its_mark_once_and_a_second_mark_keeps_the_first_due_time() -> None:
    written: list[str] = []
    marks = DeferredMarks(after=0.3)
    t0 = time.monotonic()
    marks.defer(KEY, lambda: written.append("first"))
    time.sleep(0.2)
    marks.defer(KEY, lambda: written.append("second"))  # the fetch found a new revision: a newer message
    deadline = time.monotonic() + 3
    while not written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written == ["second"], "one write, with the newest message"
    assert 0.25 <= time.monotonic() - t0 < 0.5, "due when the first mark was due"
    time.sleep(0.4)
    assert written == ["second"]


def test_a_verdict_waits_for_a_mark_already_on_its_way() -> None:
    order: list[str] = []
    started = threading.Event()

    def slow_mark() -> None:
        started.set()
        time.sleep(0.3)
        order.append("mark")

    marks = DeferredMarks(after=0.05)
    marks.defer(KEY, slow_mark)
    assert started.wait(2)
    marks.settle(KEY)
    order.append("verdict")
    assert order == ["mark", "verdict"]


def test_zero_writes_at_once_and_other_gitsyncs_are_not_held_up() -> None:
    written: list[str] = []
    DeferredMarks(after=0).defer(KEY, lambda: written.append("now"))
    assert written == ["now"]
    marks = DeferredMarks(after=0.1)
    marks.defer(("team", "slow"), lambda: written.append("slow"))
    marks.settle(("team", "other"))  # nothing pending for it: returns at once
    time.sleep(0.4)
    assert written == ["now", "slow"]


def test_a_failing_mark_does_not_stop_later_ones() -> None:
    written: list[str] = []

    def boom() -> None:
        raise RuntimeError("API server said no")

    marks = DeferredMarks(after=0.05)
    marks.defer(("team", "a"), boom)
    marks.defer(("team", "b"), lambda: written.append("b"))
    time.sleep(0.4)
    assert written == ["b"]
