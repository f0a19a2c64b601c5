"""Clock jumps for the code that judges time: the leader Lease, the shard Leases, the EKS token.

Each takes injected clocks (``clock``: monotonic seconds, ``wall``: the datetime written into a
Lease), so a jump is a number the test sets, not a wait. The rules under test: expiry is judged
on our own monotonic clock from when *we* saw a Lease change (another node's wall clock, or our
own, may jump by hours); a replica whose own clock leapt past its renew deadline (a frozen
process, a paused VM) stops acting before a standby may take over; a token is minted again once
its time is up however far the clock leapt. The Lease API is an in-memory fake with the API
server's optimistic locking (resourceVersion), since the logic, not the server, is under test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from reliability import Recorder

from reconciler.aws.auth import TokenProvider
from reconciler.gitsync.sharding import shard_options
from reconciler.gitsync.shards import ShardLeases
from reconciler.kube.client import Kube, KubeError
from reconciler.kube.lease import LeaderElector

AREA = "clock"
HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


@dataclass
class Clock:
    """One node's clocks: ``mono`` (seconds) and ``wall`` (a datetime), moved by the test."""

    mono: float = 1000.0
    wall_at: dt.datetime = T0

    def __call__(self) -> float:
        return self.mono

    def wall(self) -> dt.datetime:
        return self.wall_at

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall_at += dt.timedelta(seconds=seconds)


@dataclass
class LeaseAPI:
    """Leases in memory, with resourceVersion preconditions on PUT as the API server has them."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    rv: int = 0

    def _err(self, status: int, method: str, path: str) -> KubeError:
        return KubeError(status, {404: "NotFound", 409: "Conflict"}[status], "fake", method, path)

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        if method == "GET":
            if path not in self.objects:
                raise self._err(404, method, path)
            return self.objects[path]
        if method == "DELETE":
            self.objects.pop(path, None)
            return {}
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.objects:
                raise self._err(409, method, path)
        elif method == "PUT":
            cur = self.objects.get(path)
            if cur is None or body["metadata"].get("resourceVersion") != cur["metadata"]["resourceVersion"]:
                raise self._err(409, method, path)
        self.rv += 1
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.rv)}}
        self.objects[path] = stored
        return stored

    def get(self, path: str, query: Any = None) -> Any:
        if path in self.objects:
            return self.objects[path]
        return {"items": [o for p, o in sorted(self.objects.items()) if p.startswith(path + "/")]}

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        return self.objects.get(path)

    def holder(self) -> str | None:
        (lease,) = self.objects.values()
        return cast(str | None, lease["spec"]["holderIdentity"])


def elector(api: LeaseAPI, identity: str, clock: Clock) -> LeaderElector:
    return LeaderElector(
        cast(Kube, api), namespace="ns", name="leader", identity=identity, clock=clock, wall=clock.wall
    )


def step(e: LeaderElector) -> bool:
    """One round of :meth:`LeaderElector.run`, without its thread."""
    ok = e._try()  # one round, driven by the test
    (e.is_leader.set if ok else e.is_leader.clear)()
    return ok


def test_lease_expiry_ignores_wall_clock_jumps(reliability: Recorder) -> None:
    """A holder whose wall clock runs an hour ahead or behind keeps its Lease while it renews;
    once it stops, a standby takes over after ``duration`` on the standby's own clock."""
    api, a_clock, b_clock = LeaseAPI(), Clock(), Clock(mono=50.0)
    a, b = elector(api, "a", a_clock), elector(api, "b", b_clock)
    assert step(a)
    assert not step(b)
    for jump in (HOUR, -2 * HOUR, 24 * HOUR):  # a's wall clock jumps; it keeps renewing
        a_clock.wall_at += jump
        for _ in range(4):
            a_clock.tick(5)
            b_clock.tick(5)
            assert step(a)
            assert not step(b), f"b took a live Lease after a's wall clock jumped {jump}"
    b_clock.wall_at += 48 * HOUR  # the standby's own wall clock jumping changes nothing either
    b_clock.tick(5)
    assert not step(b)
    assert api.holder() == "a"
    b_clock.tick(14)  # a stopped renewing: 19 s of b's clock since it last saw a change
    assert step(b)
    assert api.holder() == "b"
    reliability.record(
        area=AREA,
        fault="leader's wall clock jumps +1h, -2h, +24h; standby's +48h",
        expected="the Lease stays with the renewing holder; taken over only after duration on the standby's clock",
        observed="no takeover during 12 renewals across the jumps; takeover 19 s after the last renewal",
        tried=4,
    )


def test_a_leader_whose_clock_leapt_stops_leading_before_it_can_be_taken_over(reliability: Recorder) -> None:
    """A frozen leader (SIGSTOP, a paused VM) wakes with its last renewal far behind it: it must
    not act as leader until it renewed again, since a standby may hold the Lease by then."""
    api, a_clock, b_clock = LeaseAPI(), Clock(), Clock()
    a, b = elector(api, "a", a_clock), elector(api, "b", b_clock)
    assert step(a)
    assert a.leading()
    a_clock.tick(9)
    assert a.leading(), "within the renew deadline (duration 15 - renew 5)"
    a_clock.tick(2)
    assert not a.leading(), "11 s after its last renewal was sent: no longer safe to act"
    assert a.is_leader.is_set(), "the round that would clear it has not run yet: leading() is the fence"

    a_clock.tick(30)  # frozen for 30 s; meanwhile the standby saw no change for 16 s and took over
    b_clock.tick(1)
    assert not step(b)
    b_clock.tick(16)
    assert step(b)
    assert not a.leading()
    assert not step(a), "its next round finds b's fresh Lease"
    assert not a.leading()
    assert b.leading()
    reliability.record(
        area=AREA,
        fault="the leader's monotonic clock leaps 11 s / 41 s past its last renewal (frozen process)",
        expected="leading() is false from the renew deadline on, before a standby may take the Lease",
        observed="stopped leading at 11 s; standby took over at 17 s on its clock; the old leader stayed out",
        tried=2,
    )


def test_shard_leases_ignore_wall_clock_jumps_and_fence_a_leap(reliability: Recorder) -> None:
    api = LeaseAPI()
    clocks = {"a": Clock(), "b": Clock(mono=7.0)}
    opts = {n: shard_options(2, namespace="ns", identity=n, duration=15.0) for n in clocks}
    replicas = {n: ShardLeases(cast(Kube, api), options=opts[n], clock=c, wall=c.wall) for n, c in clocks.items()}
    replicas["a"].tick()
    assert replicas["a"].held() == {0, 1}
    for jump in (HOUR, -3 * HOUR):
        clocks["a"].wall_at += jump
        clocks["b"].wall_at -= jump
        for _ in range(5):
            for n in ("a", "b"):
                clocks[n].tick(2)
                replicas[n].tick()
        assert len(replicas["a"].held()) == len(replicas["b"].held()) == 1, "one shard each, whatever the walls say"
    assert replicas["a"].held().isdisjoint(replicas["b"].held())
    clocks["a"].tick(11)  # a froze past its renew deadline
    assert replicas["a"].held() == frozenset(), "a fences itself before its Leases expire for b"
    for _ in range(9):
        clocks["b"].tick(2)
        replicas["b"].tick()
    assert replicas["b"].held() == {0, 1}, "b takes a's shard once a's Lease expired on b's clock"
    reliability.record(
        area=AREA,
        fault="two shard replicas' wall clocks jump +-1h/3h in opposite directions; one freezes 11 s",
        expected="one shard each through the jumps; the frozen one holds nothing after its deadline; the other"
        " takes its shard after the lease duration",
        observed="1+1 shards held through 20 rounds; fenced at 11 s; takeover after expiry",
        tried=3,
    )


@pytest.mark.parametrize("leap", [0.0, 13 * 60.0, 14 * 60.0, 24 * 3600.0])
def test_a_token_is_minted_again_once_the_clock_says_it_is_due(leap: float, reliability: Recorder) -> None:
    clock = Clock()
    minted: list[str] = []

    def mint() -> str:
        minted.append(f"token-{len(minted)}")
        return minted[-1]

    provider = TokenProvider(mint, clock=clock)
    assert provider() == "token-0"
    clock.tick(leap)
    token = provider()
    due = leap >= 14 * 60 - 60  # TOKEN_TTL less REFRESH_BEFORE
    assert token == ("token-1" if due else "token-0")
    assert len(minted) == (2 if due else 1)
    reliability.record(
        area=AREA,
        fault=f"the clock leaps {leap:g} s between two requests with an EKS token",
        expected="a token within its last minute or past is never sent: minted again",
        observed=f"{'new' if due else 'same'} token sent ({len(minted)} minted)",
    )
