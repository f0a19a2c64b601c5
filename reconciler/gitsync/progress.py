"""The Reconciling condition, written only for a reconcile that outlasts a few seconds.

kstatus asks a controller to show ``Reconciling=True`` while it works, and users watch for it
when a sync takes long. Most syncs do not: a push that changes one Deployment is applied and
judged healthy in about a second, and writing the mark, then the verdict that removes it, cost
the API server two writes of a custom resource (and every watcher two events) where one says
all. So the mark waits: it is written when the reconcile is still running ``after`` seconds
later, and dropped unwritten when the verdict comes first. One thread serves every GitSync.

Order is kept: a verdict never lands before a mark of the same reconcile still on its way
(:meth:`DeferredMarks.settle` waits for it), so ``Reconciling`` is never left behind.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("reconciler.gitsync")

PROGRESS_AFTER = 5.0
"""Seconds a reconcile runs before its Reconciling condition is written."""

Key = tuple[str, str]


class DeferredMarks:
    """Pending Reconciling marks, one per GitSync, written by one thread when due."""

    def __init__(self, *, after: float = PROGRESS_AFTER) -> None:
        self.after = after
        self._cond = threading.Condition()
        self._pending: dict[Key, tuple[float, Callable[[], None]]] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        self._writing: dict[Key, threading.Event] = {}
        self._thread: threading.Thread | None = None

    def defer(self, key: Key, write: Callable[[], None]) -> None:
        """Write the mark with ``write`` unless :meth:`settle` comes first; a second mark for
        ``key`` replaces the first and keeps its due time. ``after`` 0: written now."""
        if self.after <= 0:
            write()
            return
        with self._cond:
            due = self._pending[key][0] if key in self._pending else time.monotonic() + self.after
            self._pending[key] = (due, write)
            heapq.heappush(self._heap, (due, next(self._seq), key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress-marks", daemon=True)
                self._thread.start()
            self._cond.notify()

    def settle(self, key: Key) -> None:
        """The reconcile of ``key`` has its verdict: drop its pending mark, and wait for one
        already on its way, so the verdict is written after it."""
        with self._cond:
            self._pending.pop(key, None)
            writing = self._writing.get(key)
        if writing is not None:
            writing.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                write, key = self._next_due()
                done = self._writing[key] = threading.Event()
            try:
                write()
            except Exception as e:  # a mark is a courtesy: its failure must not end the thread
                log.warning(
                    f"GitSync {key[0]}/{key[1]}: Reconciling not written: {e}", extra={"gitsync": "/".join(key)}
                )
            finally:
                with self._cond:
                    self._writing.pop(key, None)
                done.set()

    def _next_due(self) -> tuple[Callable[[], None], Key]:
        """Wait for the next mark that is due and still pending (the caller holds the lock)."""
        while True:
            now = time.monotonic()
            while self._heap and self._pending.get(self._heap[0][2], (None,))[0] != self._heap[0][0]:
                heapq.heappop(self._heap)  # settled, or replaced by a later defer of the same due
            if self._heap and self._heap[0][0] <= now:
                _, _, key = heapq.heappop(self._heap)
                return self._pending.pop(key)[1], key
            self._cond.wait(timeout=(self._heap[0][0] - now) if self._heap else None)
