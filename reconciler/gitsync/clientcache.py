"""A bounded cache of API handles per (target, identity), closed when evicted.

Each GitSync naming a ServiceAccount or a remote target gets its own handle (a connection pool,
a RestMapper with its discovery, for EKS a token), reused across reconciles.  A tenant can mint
identities at will (a GitSync per ServiceAccount name), so the cache keeps the most recently
used ``size`` handles and closes the one it drops: a handle still in use by a worker finishes
its requests (urllib3 discards, rather than reuses, connections returned to a closed pool), and
the next reconcile needing it builds a new one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class Closable(Protocol):
    def close(self) -> None: ...


V = TypeVar("V", bound=Closable)

DEFAULT_SIZE = 256


class ClientCache(Generic[K, V]):
    """``get(key, make)``: the cached value for ``key``, or ``make()``'s, least recently used evicted."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        made = make()  # outside the lock: building a handle may take a network round trip
        evicted: list[V] = []
        with self._lock:
            current = self._items.get(key)
            if current is not None:  # another worker built one meanwhile: keep one per key
                self._items.move_to_end(key)
                evicted.append(made)
                result = current
            else:
                self._items[key] = made
                result = made
                while len(self._items) > self.size:
                    evicted.append(self._items.popitem(last=False)[1])
        for v in evicted:
            v.close()
        return result

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        """Close every cached value (at shutdown)."""
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        for v in items:
            v.close()
