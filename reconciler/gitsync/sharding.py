"""The loop's side of shard Leases: which GitSyncs this replica reconciles, and when that changes.

:class:`~reconciler.gitsync.shards.ShardLeases` decides which shards this replica holds;
:class:`ShardFollower` runs its rounds in one thread and turns each change into work for the
loop: a shard taken queues every GitSync of it at once (the previous owner may have left it
half-synced, or died), a shard lost forgets its GitSyncs here (their drift watch, state and
metric series go to the new owner). On stop (SIGTERM) it hands every shard back at once, so the
other replicas take them on their next round instead of after the Lease expires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from reconciler.gitsync.schedule import Key
from reconciler.gitsync.shards import ShardLeases, ShardOptions, shard_of
from reconciler.kube.client import KubeError, UnreachableError

log = logging.getLogger("reconciler.gitsync.sharding")


def shard_options(shards: int, *, namespace: str, identity: str, duration: float) -> ShardOptions:
    """``reconciler run``'s shard Leases: ``--lease-duration`` as their duration, the fencing
    deadline at two thirds of it and a round every 2/15 of it (15 s: 10 s and 2 s)."""
    return ShardOptions(
        shards=shards,
        namespace=namespace,
        identity=identity,
        lease_duration=duration,
        renew_deadline=duration * 2 / 3,
        retry_period=duration * 2 / 15,
    )


class ShardFollower:
    """Runs ``leases`` until ``stop`` is set; ``known`` lists the GitSyncs the watch holds,
    ``take`` queues one whose shard was taken, ``release`` forgets one whose shard was lost."""

    def __init__(
        self,
        leases: ShardLeases,
        *,
        known: Callable[[], Iterable[Key]],
        take: Callable[[Key], None],
        release: Callable[[Key], None],
        stop: threading.Event,
    ) -> None:
        self.leases, self._known, self._take, self._release, self._stop = leases, known, take, release, stop
        self._held: frozenset[int] = frozenset()

    def owns(self, namespace: str, name: str) -> bool:
        return self.leases.owns(namespace=namespace, name=name)

    def deadline(self, namespace: str, name: str) -> float:
        """Monotonic time by which every write for GitSync ``namespace/name`` must be over."""
        return self.leases.fence(namespace=namespace, name=name)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="shards", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """A round every retry period: renew and rebalance, follow the change; hand back on stop."""
        try:
            while not self._stop.is_set():
                self.round()
                self._stop.wait(self.leases.options.retry_period)
        finally:
            self.leases.stop()  # drops every claim first: no write of ours after this starts
            log.info("shards handed back", extra={"reason": "ShardsReleased"})

    def round(self) -> None:
        try:
            self.leases.tick()
        except (KubeError, UnreachableError) as e:  # our claims lapse at their deadline meanwhile
            log.warning("shard leases: %s", e, extra={"reason": "ShardLeaseFailed"})
        self.follow(self.leases.held())
        self.leases.count(self._known())

    def follow(self, held: frozenset[int]) -> None:
        """Queue the GitSyncs of shards newly held, forget those of shards no longer held."""
        gained, lost = held - self._held, self._held - held
        self._held = held
        if not gained and not lost:
            return
        log.info(
            f"shards held: {sorted(held)} (taken {sorted(gained)}, lost {sorted(lost)})",
            extra={"reason": "ShardsRebalanced"},
        )
        shards = self.leases.options.shards
        for key in list(self._known()):
            k = shard_of(namespace=key[0], name=key[1], shards=shards)
            if k in gained:
                self._take(key)
            elif k in lost:
                self._release(key)
