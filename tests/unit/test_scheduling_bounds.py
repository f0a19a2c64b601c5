"""The scheduler's per-namespace fairness and the bounded client cache: pure bookkeeping, tested
on the real Controller scheduler (no API server is contacted: nothing here reconciles)."""

from __future__ import annotations

import threading
from pathlib import Path

import kubernetes
import pytest

from reconciler.gitsync import fairness
from reconciler.gitsync import loop as controller
from reconciler.gitsync.clientcache import ClientCache
from reconciler.gitsync.spec import SpecError, check_timeout, parse
from reconciler.kube.client import Kube


def _controller(tmp_path: Path, **opts: object) -> controller.Controller:
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:9"))
    return controller.Controller(Kube(api), controller.ControllerOptions(cache_dir=tmp_path, **opts))  # type: ignore[arg-type]


def _next(ctl: controller.Controller, within: float = 0.5) -> controller.Key | None:
    """What the scheduler hands out within ``within`` seconds (None: nothing, it kept waiting)."""
    got: list[controller.Key | None] = []
    t = threading.Thread(target=lambda: got.append(ctl.scheduler.next_due()), daemon=True)
    t.start()
    t.join(within)
    if t.is_alive():
        ctl.stop()
        t.join(2)
        ctl.stop_event.clear()
        return None
    return got[0]


def test_a_saturated_namespace_does_not_keep_others_waiting(tmp_path: Path) -> None:
    ctl = _controller(tmp_path, workers=2)  # two workers: one per namespace at most
    for key in [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1")]:
        ctl.scheduler.schedule(key, 0)
    assert _next(ctl) == ("a", "1")
    assert _next(ctl) == ("b", "1"), "a's other due GitSyncs are parked, b's gets the second worker"
    assert _next(ctl) is None, "both workers busy"
    ctl.scheduler.done(("b", "1"), None)
    assert _next(ctl) is None, "a is still at its limit: a free worker does not go to a"
    ctl.scheduler.done(("a", "1"), None)
    assert _next(ctl) == ("a", "2"), "a's parked GitSyncs come back, in order, when a has room"
    ctl.scheduler.done(("a", "2"), None)
    assert _next(ctl) == ("a", "3")


def test_parked_gitsync_is_not_run_twice_and_keeps_its_earliest_due(tmp_path: Path) -> None:
    ctl = _controller(tmp_path, workers=2)
    ctl.scheduler.schedule(("a", "1"), 0)
    ctl.scheduler.schedule(("a", "2"), 0)
    assert _next(ctl) == ("a", "1")
    assert _next(ctl) is None  # a/2 parked
    ctl.scheduler.schedule(("a", "2"), 0)  # a watch event for the parked one: still one entry
    ctl.scheduler.done(("a", "1"), None)
    assert _next(ctl) == ("a", "2")
    assert _next(ctl) is None, "a/2 was handed out once"


@pytest.mark.parametrize(("workers", "single", "limit"), [(4, False, 2), (1, False, 1), (3, False, 1), (8, True, 8)])
def test_default_limit(workers: int, single: bool, limit: int) -> None:
    assert fairness.default_limit(workers, single_namespace=single) == limit


def test_explicit_limit_wins(tmp_path: Path) -> None:
    ctl = _controller(tmp_path, workers=4, max_concurrent_per_namespace=3)
    for i in range(4):
        ctl.scheduler.schedule(("a", str(i)), 0)
    assert [_next(ctl) for _ in range(4)] == [("a", "0"), ("a", "1"), ("a", "2"), None]


class _Handle:
    def __init__(self, name: str, closed: list[str]) -> None:
        self.name, self._closed = name, closed

    def close(self) -> None:
        self._closed.append(self.name)


def test_client_cache_is_bounded_and_closes_what_it_evicts() -> None:
    closed: list[str] = []
    made: list[str] = []
    cache: ClientCache[str, _Handle] = ClientCache(size=2)

    def get(key: str) -> _Handle:
        def make() -> _Handle:
            made.append(key)
            return _Handle(key, closed)

        return cache.get(key, make)

    a = get("a")
    get("b")
    assert get("a") is a
    assert made == ["a", "b"], "a hit builds nothing"
    get("c")  # evicts b, the least recently used
    assert closed == ["b"]
    assert len(cache) == 2
    get("b")
    assert made == ["a", "b", "c", "b"]
    assert closed == ["b", "a"]
    cache.close()
    assert sorted(closed) == ["a", "b", "b", "c"]


def test_client_cache_keeps_one_handle_when_two_workers_race() -> None:
    closed: list[str] = []
    cache: ClientCache[str, _Handle] = ClientCache(size=4)
    inner = _Handle("inner", closed)

    def make_racing() -> _Handle:
        cache.get("k", lambda: inner)  # another worker wins meanwhile
        return _Handle("loser", closed)

    assert cache.get("k", make_racing) is inner
    assert closed == ["loser"]
    assert len(cache) == 1


def _gs(timeout: str) -> dict[str, object]:
    return {
        "metadata": {"name": "g", "namespace": "t"},
        "spec": {"source": {"git": {"url": "https://x/r.git"}}, "timeout": timeout},
    }


def test_timeout_over_the_ceiling_is_refused_naming_the_field() -> None:
    check_timeout(parse(_gs("1h")), maximum=3600)
    with pytest.raises(SpecError, match=r"^spec\.timeout: 36000000s is over this controller's maximum of 3600s"):
        check_timeout(parse(_gs("10000h")), maximum=3600)


def test_an_idle_worker_is_borrowed_while_nothing_else_is_due_but_one_stays_free(tmp_path: Path) -> None:
    ctl = _controller(tmp_path, workers=4)  # a's limit: 2
    for i in range(5):
        ctl.scheduler.schedule(("a", str(i)), 0)
    assert [_next(ctl) for _ in range(3)] == [("a", "0"), ("a", "1"), ("a", "2")], "a borrows a third worker"
    assert _next(ctl) is None, "the fourth worker stays free for another namespace"
    ctl.scheduler.schedule(("b", "1"), 0)
    assert _next(ctl) == ("b", "1"), "b gets the worker a could not take"
    ctl.scheduler.done(("a", "0"), None)
    ctl.scheduler.schedule(("b", "2"), 0)
    assert _next(ctl) == ("b", "2"), "a is over its limit: b's due GitSync goes before a's parked ones"
    ctl.scheduler.done(("a", "1"), None)
    ctl.scheduler.done(("b", "1"), None)
    assert _next(ctl) == ("a", "3"), "a's parked GitSyncs come back in order"
