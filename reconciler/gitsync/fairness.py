"""Per-namespace worker slots, so one tenant cannot hold every worker.

A GitSync with ``wait: true`` and a long ``timeout`` keeps its worker for as long as its
objects stay unhealthy; four of them in one namespace would hold a four-worker controller and
every other tenant's GitSyncs would wait behind them, however due.  The scheduler therefore
counts running GitSyncs per namespace, and sets aside (parks) a due GitSync whose namespace is
at its limit instead of letting it wait at the head of the queue: the next due GitSync of
another namespace gets the free worker.  A parked GitSync goes back into the queue, still due,
when a GitSync of its namespace finishes, so nothing is lost and no one polls.

The limit binds only while it protects someone: when nothing else is due, a parked GitSync may
borrow an idle worker, as long as one worker stays free (:func:`may_borrow`). A fleet kept in
one namespace (Flux keeps all of its Kustomizations in flux-system) would otherwise run at half
speed for the sake of tenants that do not exist, and one namespace still never holds every worker.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=tuple[Any, ...])  # entries sort by their first item, the due time


def default_limit(workers: int, *, single_namespace: bool) -> int:
    """Half the workers (at least one); all of them when the controller watches one namespace only,
    where there is nobody to be fair to."""
    return workers if single_namespace else max(1, workers // 2)


def may_borrow(*, running: int, workers: int) -> bool:
    """Whether a parked GitSync may take an idle worker while nothing else is due: only while a
    worker would stay free for the next due GitSync of another namespace."""
    return running < workers - 1


class NamespaceSlots(Generic[T]):
    """Bookkeeping only; the caller holds its own lock around every call."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._running: Counter[str] = Counter()
        self._parked: dict[str, list[T]] = {}

    def free(self, namespace: str) -> bool:
        """Whether a GitSync of ``namespace`` may start now."""
        return self._running[namespace] < self.limit

    def take(self, namespace: str) -> None:
        self._running[namespace] += 1

    def park(self, namespace: str, entry: T) -> None:
        """Keep a due entry of a saturated namespace until one of its GitSyncs finishes."""
        self._parked.setdefault(namespace, []).append(entry)

    def release(self, namespace: str) -> list[T]:
        """A GitSync of ``namespace`` finished: the entries to put back into the queue."""
        self._running[namespace] -= 1
        if self._running[namespace] <= 0:
            del self._running[namespace]
        return self._parked.pop(namespace, [])

    def borrow(self) -> T | None:
        """The parked entry due first (entries sort by due time), taken out; None with none parked."""
        if not self._parked:
            return None
        namespace = min(self._parked, key=lambda ns: self._parked[ns][0])
        entries = self._parked[namespace]
        entry = entries.pop(0)
        if not entries:
            del self._parked[namespace]
        return entry

    def running(self, namespace: str) -> int:
        return self._running[namespace]

    def parked(self) -> int:
        return sum(len(v) for v in self._parked.values())
