"""When each GitSync is due, and which worker may take it.

A heap of due times, at most one entry that counts per GitSync (an earlier due time
supersedes a later one; superseded entries are skipped when they surface), never two
workers for one GitSync, and per-namespace slots (:mod:`reconciler.gitsync.fairness`) so
one tenant cannot hold every worker. A GitSync asked for while it runs is run again as
soon as it finishes, not lost and not run twice at once.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

from reconciler.gitsync import fairness

Key = tuple[str, str]
"""A GitSync: (namespace, name)."""
Entry = tuple[float, int, Key]
"""A heap entry: monotonic due time, a sequence number (ties keep their order), the GitSync."""


class Scheduler:
    """Thread-safe: the watch schedules, the dispatcher takes due keys, workers report done."""

    def __init__(self, *, workers: int, per_namespace: int, stop: threading.Event, active: Callable[[], bool]) -> None:
        """``per_namespace``: running GitSyncs of one namespace at most; ``stop``: ends a wait for
        work; ``active``: False while this replica may not reconcile (a standby without the lease)."""
        self.workers = workers
        self._stop, self._active = stop, active
        self._lock = threading.Condition()
        self._heap: list[Entry] = []
        self._due: dict[Key, float] = {}
        self._seq = itertools.count()
        self._running: set[Key] = set()
        self._slots: fairness.NamespaceSlots[Entry] = fairness.NamespaceSlots(per_namespace)
        self._again: set[Key] = set()

    def schedule(self, key: Key, delay: float) -> None:
        """Due in ``delay`` seconds, unless it is due sooner already; while it runs, only "now" counts
        (it runs again when it finishes: a later due time is what the finished run returns)."""
        due = time.monotonic() + max(0.0, delay)
        with self._lock:
            if key in self._running:
                if delay <= 0:
                    self._again.add(key)
                return
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._lock.notify()

    def next_due(self) -> Key | None:
        """Wait for a due GitSync with a free worker and a free slot in its namespace, and mark it
        running; None once stopped or inactive."""
        with self._lock:
            while not self._stop.is_set():
                if not self._active():
                    return None
                now = time.monotonic()
                self._skip_unready(now)
                if self._heap and self._heap[0][0] <= now and len(self._running) < self.workers:
                    return self._start(heapq.heappop(self._heap)[2])
                if fairness.may_borrow(running=len(self._running), workers=self.workers):
                    parked = self._slots.borrow()  # nothing else is due: an idle worker need not wait
                    if parked is not None:
                        return self._start(parked[2])
                wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                self._lock.wait(timeout=min(max(wait, 0.05), 1.0))
        return None

    def _start(self, key: Key) -> Key:
        """Mark ``key`` running (the caller holds the lock)."""
        del self._due[key]
        self._running.add(key)
        self._slots.take(key[0])
        return key

    def _skip_unready(self, now: float) -> None:
        """Pop superseded entries off the top, and park due ones whose namespace is at its limit
        (back when its namespace has room). The caller holds the lock."""
        while self._heap:
            due, _, top = self._heap[0]
            if self._due.get(top) != due:
                heapq.heappop(self._heap)
            elif due <= now and not self._slots.free(top[0]):
                self._slots.park(top[0], heapq.heappop(self._heap))
            else:
                return

    def done(self, key: Key, next_delay: float | None) -> None:
        """A worker finished ``key``: free its worker and slot, and schedule it again (None: only on change)."""
        with self._lock:
            self._running.discard(key)
            for entry in self._slots.release(key[0]):
                heapq.heappush(self._heap, entry)
            again = key in self._again
            self._again.discard(key)
            self._lock.notify()
        if again:
            self.schedule(key, 0)
        elif next_delay is not None:
            self.schedule(key, next_delay)

    def wake(self) -> None:
        """Wake every waiter (after ``stop`` is set, so it returns at once)."""
        with self._lock:
            self._lock.notify_all()
