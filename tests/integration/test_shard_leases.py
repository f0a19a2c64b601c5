"""Shard Leases against the real API server: two and three replicas (ShardLeases instances with
their own Kube handles), driven round by round on a clock the test moves, so expiry and fencing
are checked exactly rather than by sleeping."""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from reconciler.gitsync.shards import (
    MEMBER_PREFIX,
    ShardLeases,
    ShardOptions,
    member_lease_name,
    shard_lease_name,
)
from reconciler.kube import client

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class Replicas:
    def __init__(self, cluster: Any, namespace: str, shards: int) -> None:
        self.cluster, self.namespace, self.shards = cluster, namespace, shards
        self.clock = Clock()
        self.all: dict[str, ShardLeases] = {}
        self.registries: dict[str, CollectorRegistry] = {}
        self._handles: list[client.Kube] = []

    def add(self, identity: str) -> ShardLeases:
        kube = client.connect(str(self.cluster.kubeconfig))
        self._handles.append(kube)
        opts = ShardOptions(
            shards=self.shards, namespace=self.namespace, identity=identity, lease_duration=15, renew_deadline=10
        )
        self.registries[identity] = CollectorRegistry()
        r = ShardLeases(kube, options=opts, clock=self.clock, registry=self.registries[identity])
        self.all[identity] = r
        return r

    def rounds(self, n: int, *, who: list[str] | None = None, step: float = 2.0) -> None:
        """``n`` rounds: the clock moves ``step``, then the replicas named tick, at the same time."""
        for _ in range(n):
            self.clock.now += step
            names = who if who is not None else list(self.all)
            with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
                list(pool.map(lambda i: self.all[i].tick(), names))
            self.check_single_holder()

    def check_single_holder(self) -> None:
        for k in range(self.shards):
            holders = [i for i, r in self.all.items() if r.holds(k)]
            assert len(holders) <= 1, f"shard {k} held by {holders} at once"

    def close(self) -> None:
        for k in self._handles:
            k.close()


@pytest.fixture
def replicas(cluster: Any, namespace: str) -> Iterator[Any]:
    made: list[Replicas] = []

    def make(shards: int) -> Replicas:
        made.append(Replicas(cluster, namespace, shards))
        return made[-1]

    yield make
    for r in made:
        r.close()


def holders(kube: client.Kube, namespace: str, shards: int) -> list[str | None]:
    return [
        (kube.get(f"{LEASES.format(ns=namespace)}/{shard_lease_name(k)}")["spec"] or {}).get("holderIdentity")
        for k in range(shards)
    ]


def test_two_replicas_split_fairly_and_agree_with_the_api(replicas: Any, kube: client.Kube, namespace: str) -> None:
    rs = replicas(5)
    a, b = rs.add("replica-a"), rs.add("replica-b")
    rs.rounds(1, who=["replica-a"])
    assert a.held() == frozenset(range(5)), "alone, a replica takes every shard"
    rs.rounds(3)
    assert len(a.held()) == 3, "5 over 2: the first in identity order gets the odd one"
    assert len(b.held()) == 2
    assert a.held() | b.held() == frozenset(range(5))
    api = holders(kube, namespace, 5)
    assert [k for k in range(5) if api[k] == "replica-a"] == sorted(a.held())
    assert [k for k in range(5) if api[k] == "replica-b"] == sorted(b.held())
    assert a.owns(namespace="team-a", name="apps") != b.owns(namespace="team-a", name="apps")


def test_three_replicas_split_fairly(replicas: Any) -> None:
    rs = replicas(7)
    for i in ("r1", "r2", "r3"):
        rs.add(i)
    rs.rounds(4)
    sizes = sorted(len(r.held()) for r in rs.all.values())
    assert sizes == [2, 2, 3]
    assert frozenset().union(*(r.held() for r in rs.all.values())) == frozenset(range(7))


def test_a_dead_replicas_shards_are_taken_after_expiry_and_not_before(replicas: Any) -> None:
    rs = replicas(6)
    a, b = rs.add("r-a"), rs.add("r-b")
    rs.rounds(4)
    lost = b.held()
    assert len(lost) == 3
    # b dies (no more rounds, no hand-back). a goes on, 2 s per round.
    rs.rounds(4, who=["r-a"])  # 8 s: b's claim has not lapsed, a must not take
    assert b.held() == lost
    assert a.held().isdisjoint(lost)
    rs.rounds(1, who=["r-a"])  # 10 s after b's last renewal: b's own claim lapses first (fencing)
    assert b.held() == frozenset()
    assert a.held().isdisjoint(lost)
    rs.rounds(4, who=["r-a"])  # past 15 s since a last saw b's leases change: taken over
    assert a.held() == frozenset(range(6))
    taken = rs.registries["r-a"].get_sample_value("reconciler_shard_rebalances_total")
    assert taken is not None
    assert taken >= 6, "3 shards taken at first, 3 taken over"
    assert rs.registries["r-a"].get_sample_value("reconciler_shards_held") == 6
    rs.rounds(4)  # b comes back (a partition healed): it rejoins, no shard ever has two holders
    assert len(a.held()) == 3
    assert len(b.held()) == 3


def test_stop_hands_shards_back_at_once(replicas: Any, kube: client.Kube, namespace: str) -> None:
    rs = replicas(4)
    a, b, c = rs.add("s-a"), rs.add("s-b"), rs.add("s-c")
    rs.rounds(4)
    assert sorted(len(r.held()) for r in (a, b, c)) == [1, 1, 2]
    gone = c.held()
    c.stop()
    del rs.all["s-c"]
    assert c.held() == frozenset()
    assert kube.get_or_none(f"{LEASES.format(ns=namespace)}/{member_lease_name('s-c')}") is None
    rs.rounds(2, step=0.5)  # well within any lease duration
    assert a.held() | b.held() == frozenset(range(4))
    assert gone <= a.held() | b.held()
    assert sorted(len(r.held()) for r in (a, b)) == [2, 2]


def test_never_two_holders_while_replicas_come_and_go(replicas: Any) -> None:
    rs = replicas(8)
    rng = random.Random(13)  # noqa: S311 - a reproducible schedule, not a secret
    for i in ("x1", "x2", "x3"):
        rs.add(i)
    rs.rounds(3)
    for _ in range(25):  # every round checks that no shard has two holders
        alive = [i for i in rs.all if rng.random() > 0.25]  # some miss a round, as under load or a partition
        rs.rounds(1, who=alive or ["x1"], step=rng.choice([0.5, 2.0, 6.0]))
    rs.rounds(12)
    assert frozenset().union(*(r.held() for r in rs.all.values())) == frozenset(range(8))
    assert sum(len(r.held()) for r in rs.all.values()) == 8


def test_membership_leases_are_labelled(replicas: Any, kube: client.Kube, namespace: str) -> None:
    rs = replicas(2)
    rs.add("m-1")
    rs.rounds(1)
    items = kube.get(LEASES.format(ns=namespace), query=[("labelSelector", "gitops.reconciler.dev/lease=member")])
    assert [i["metadata"]["name"] for i in items["items"]] == [member_lease_name("m-1")]
    assert items["items"][0]["metadata"]["name"].startswith(MEMBER_PREFIX)
