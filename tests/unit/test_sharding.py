"""The loop's side of shards (gitsync/sharding.py) and the write fence (gitsync/cluster.py), with fakes."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, cast

import pytest
from pipeline_fakes import gitsync

from reconciler.gitsync.cluster import KubeCluster
from reconciler.gitsync.errors import ShardLostError
from reconciler.gitsync.outcome import Outcomes
from reconciler.gitsync.results import SyncOptions
from reconciler.gitsync.sharding import ShardFollower, shard_options
from reconciler.gitsync.shards import ShardLeases, shard_of
from reconciler.kube.client import FenceError
from reconciler.report.metrics import Metrics
from reconciler.sync import inventory
from reconciler.sync.plan import Plan

KEYS = [("team", f"app-{i}") for i in range(40)]


class FakeLeases:
    def __init__(self) -> None:
        self.options = shard_options(4, namespace="ns", identity="me", duration=15.0)
        self.counted: list[int] = []

    def count(self, gitsyncs: Iterable[tuple[str, str]]) -> None:
        self.counted.append(len(list(gitsyncs)))


def follower() -> tuple[ShardFollower, list[tuple[str, str]], list[tuple[str, str]]]:
    taken: list[tuple[str, str]] = []
    released: list[tuple[str, str]] = []
    f = ShardFollower(
        cast(ShardLeases, FakeLeases()),
        known=lambda: KEYS,
        take=taken.append,
        release=released.append,
        stop=threading.Event(),
    )
    return f, taken, released


def in_shards(shards: set[int]) -> list[tuple[str, str]]:
    return [k for k in KEYS if shard_of(namespace=k[0], name=k[1], shards=4) in shards]


def test_a_shard_taken_queues_its_gitsyncs_and_a_shard_lost_forgets_them() -> None:
    f, taken, released = follower()
    f.follow(frozenset({0, 1}))
    assert taken == in_shards({0, 1})
    assert released == []
    taken.clear()
    f.follow(frozenset({1, 2}))
    assert taken == in_shards({2}), "only the newly held shard is queued"
    assert released == in_shards({0})
    taken.clear()
    released.clear()
    f.follow(frozenset({1, 2}))
    assert (taken, released) == ([], []), "nothing changed: nothing queued or forgotten"


def test_shard_options_keep_the_fencing_margin() -> None:
    o = shard_options(12, namespace="ns", identity="me", duration=15.0)
    assert (o.lease_duration, o.renew_deadline, o.retry_period) == (15.0, 10.0, 2.0)
    o = shard_options(12, namespace="ns", identity="me", duration=6.0)
    assert o.retry_period < o.renew_deadline < o.lease_duration


class NoKube:
    """Any request is a test failure: the fence must stop a write before it reaches the API."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the API was called ({name}) after the shard was lost")


@pytest.mark.parametrize("phase", ["write_ahead", "apply", "prune", "record", "hooks"])
def test_a_write_phase_does_not_start_once_the_shard_is_lost(phase: str) -> None:
    options = SyncOptions(name="apps", namespace="team")
    cluster = KubeCluster(cast(Any, NoKube()), cast(Any, NoKube()), options, lambda: False)
    p, inv = Plan(items=[]), inventory.Inventory()
    calls = {
        "write_ahead": lambda: cluster.write_ahead(inv, p),
        "apply": lambda: cluster.apply(p, progress=None),
        "prune": lambda: cluster.prune(p, progress=None),
        "record": lambda: cluster.record(inv, p, res=cast(Any, None), revision="r"),
        "hooks": lambda: cluster.hooks((), event="pre-install"),
    }
    with pytest.raises(ShardLostError):
        calls[phase]()


def test_an_unchanged_status_is_not_written_again() -> None:
    written: list[dict[str, Any]] = []
    outcomes = Outcomes(
        patch_status=lambda o, s: written.append(s), events=cast(Any, None), metrics=Metrics(), progress_after=0
    )
    obj = gitsync()
    outcomes.reconciling(obj, "reconciling x")
    outcomes.reconciling(obj, "reconciling x")
    assert len(written) == 1
    outcomes.reconciling(obj, "reconciling y")
    assert len(written) == 2, "a changed message is a change"


class LapsedKube:
    """A fenced handle whose shard claim has lapsed: every request is refused unsent."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise FenceError(f"{name}: not sent, its fence (the shard claim) has passed")

        return refuse


def test_a_claim_lapsing_inside_a_phase_is_shard_lost_not_a_failure() -> None:
    cluster = KubeCluster(cast(Any, LapsedKube()), cast(Any, NoKube()), SyncOptions(name="apps", namespace="team"))
    with pytest.raises(ShardLostError):
        cluster.load()


def test_the_fence_is_the_claim_deadline_and_moves_with_renewals() -> None:
    now = [100.0]
    leases = ShardLeases(
        cast(Any, NoKube()),
        options=shard_options(4, namespace="ns", identity="me", duration=15.0),
        clock=lambda: now[0],
    )
    k = shard_of(namespace="team", name="apps", shards=4)
    assert leases.fence(namespace="team", name="apps") == 0.0, "no claim: already lapsed"
    assert not leases.owns(namespace="team", name="apps")
    leases._renewed[k] = 100.0  # a renewal sent at t=100
    assert leases.fence(namespace="team", name="apps") == 110.0, "renew deadline (10 s) after the send"
    now[0] = 109.9
    assert leases.owns(namespace="team", name="apps")
    now[0] = 110.0
    assert not leases.owns(namespace="team", name="apps"), "lapsed exactly at the fence"
