"""The pure parts of sharding: the stable hash and the fair share."""

from __future__ import annotations

import collections

import pytest

from reconciler.gitsync.shards import ShardOptions, fair_share, member_lease_name, shard_of


def test_shard_of_is_stable_across_processes_and_releases() -> None:
    # Fixed values: a change here would move GitSyncs between replicas on upgrade.
    assert [shard_of(namespace="team-a", name=f"app-{i}", shards=3) for i in range(10)] == [
        2,
        2,
        1,
        1,
        0,
        0,
        1,
        1,
        0,
        0,
    ]


def test_shard_of_spreads_a_fleet_evenly() -> None:
    counts = collections.Counter(shard_of(namespace=f"ns-{i % 7}", name=f"app-{i}", shards=4) for i in range(4000))
    assert set(counts) == {0, 1, 2, 3}
    assert max(counts.values()) - min(counts.values()) < 200


@pytest.mark.parametrize(("shards", "members"), [(1, 1), (5, 2), (7, 3), (4, 5), (10, 4)])
def test_fair_shares_add_up_and_differ_by_at_most_one(shards: int, members: int) -> None:
    names = [f"replica-{j}" for j in range(members)]
    shares = [fair_share(shards=shards, members=names, me=n) for n in names]
    assert sum(shares) == shards
    assert max(shares) - min(shares) <= 1


def test_a_replica_not_yet_listed_counts_itself() -> None:
    assert fair_share(shards=4, members=["b"], me="a") == 2


def test_member_lease_names_are_dns_labels() -> None:
    name = member_lease_name("reconciler-7d9f8c-abcde.with.dots_and_UPPER")
    assert len(name) <= 63
    assert name == name.lower()
    assert all(c.isalnum() or c == "-" for c in name)


def test_options_keep_the_fencing_order() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        ShardOptions(shards=2, namespace="ns", identity="a", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="at least 1"):
        ShardOptions(shards=0, namespace="ns", identity="a")
