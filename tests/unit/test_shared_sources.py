"""The concurrency rules of reconciler.source.shared, with a fake source on a tmp directory."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reconciler.source.artifact import Artifact, SourceError
from reconciler.source.shared import SharedOptions, SharedSources, source_key


class FakeSource:
    """Serves ``self.revision``; like the real sources, its artifact stays valid only until its
    next fetch (the previous snapshot is deleted then), which the shared checkouts must survive."""

    def __init__(self, root: Path, *, delay: float = 0.0, gate: threading.Event | None = None) -> None:
        self.root, self.delay, self.gate = root, delay, gate
        self.revision = "main@sha1:" + "1" * 40
        self.fetches = 0
        self.fail: str | None = None
        self.closed = False
        self._current: Path | None = None
        self._lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def fetch(self) -> Artifact:
        with self._lock:
            self.fetches += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.gate is not None:
                self.gate.wait(10)
            time.sleep(self.delay)
            if self.fail:
                raise SourceError(self.fail, url="fake://repo")
            path = self.root / f"snap-{self.fetches}"
            (path / "apps").mkdir(parents=True)
            (path / "apps" / "app.yaml").write_text(f"revision: {self.revision}\n")
            (path / "link.yaml").symlink_to("apps/app.yaml")
            if self._current is not None:
                _rm(self._current)
            self._current = path
            return Artifact(revision=self.revision, path=path)
        finally:
            with self._lock:
                self.concurrent -= 1

    def close(self) -> None:
        self.closed = True
        if self._current is not None:
            _rm(self._current)


def _rm(path: Path) -> None:
    for p in sorted(path.rglob("*"), reverse=True):
        p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
    path.rmdir()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shared(tmp_path: Path, clock: Clock | None = None, **opts: float) -> SharedSources:
    return SharedSources(root=tmp_path / "cache", options=SharedOptions(**opts), clock=clock or Clock())  # type: ignore[arg-type]


def test_fifty_concurrent_readers_wait_for_one_fetch(tmp_path: Path) -> None:
    gate = threading.Event()
    src = FakeSource(tmp_path / "src", gate=gate)
    s = shared(tmp_path)
    got: list[str] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            co = s.checkout("k", open_source=lambda: src)
            got.append((co.path / "apps" / "app.yaml").read_text())
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # all 50 are now waiting on the one gated fetch
    gate.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert src.fetches == 1
    assert s.fetches == 1
    assert got == [f"revision: {src.revision}\n"] * 50
    assert s.stats()[1] == 1, "one checkout for the 50 readers"


def test_different_keys_fetch_concurrently(tmp_path: Path) -> None:
    gate = threading.Event()
    a, b = FakeSource(tmp_path / "a", gate=gate), FakeSource(tmp_path / "b", gate=gate)
    s = shared(tmp_path)
    threads = [
        threading.Thread(target=s.checkout, args=("a",), kwargs={"open_source": lambda: a}),
        threading.Thread(target=s.checkout, args=("b",), kwargs={"open_source": lambda: b}),
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while (a.concurrent, b.concurrent) != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    both_in_flight = (a.concurrent, b.concurrent) == (1, 1)
    gate.set()
    for t in threads:
        t.join(10)
    assert both_in_flight, "a fetch of one key must not wait for another key's"


def test_fresh_result_is_reused_until_it_ages_or_is_invalidated(tmp_path: Path) -> None:
    clock = Clock()
    src = FakeSource(tmp_path / "src")
    s = shared(tmp_path, clock, fresh_for=5.0)
    s.checkout("k", open_source=lambda: src).release()
    clock.now += 4.9
    s.checkout("k", open_source=lambda: src).release()
    assert src.fetches == 1
    clock.now += 0.2
    s.checkout("k", open_source=lambda: src).release()
    assert src.fetches == 2
    s.invalidate("k")
    s.checkout("k", open_source=lambda: src).release()
    assert src.fetches == 3


def test_a_failed_fetch_reaches_every_waiter_and_is_not_cached(tmp_path: Path) -> None:
    gate = threading.Event()
    src = FakeSource(tmp_path / "src", gate=gate)
    src.fail = "connection refused"
    s = shared(tmp_path)
    errors: list[str] = []

    def reader() -> None:
        try:
            s.checkout("k", open_source=lambda: src)
        except SourceError as e:
            errors.append(e.reason)

    threads = [threading.Thread(target=reader) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert errors == ["connection refused"] * 5
    assert src.fetches == 1
    src.fail = None
    with s.checkout("k", open_source=lambda: src) as co:
        assert co.revision == src.revision
    assert src.fetches == 2, "an error is not handed out again"


def test_old_revision_stays_while_read_and_goes_when_released(tmp_path: Path) -> None:
    clock = Clock()
    src = FakeSource(tmp_path / "src")
    s = shared(tmp_path, clock)
    old = s.checkout("k", open_source=lambda: src)
    src.revision = "main@sha1:" + "2" * 40
    s.invalidate("k")
    new = s.checkout("k", open_source=lambda: src)
    assert new.revision != old.revision
    assert new.path != old.path
    assert (old.path / "apps" / "app.yaml").read_text() == f"revision: main@sha1:{'1' * 40}\n", "source snapshot gone"
    assert (old.path / "link.yaml").read_text() == (old.path / "apps" / "app.yaml").read_text()
    old.release()
    assert not old.path.exists()
    new.release()
    assert new.path.exists(), "the newest revision stays for the next reader while within bounds"
    old.release()  # a second release changes nothing
    assert new.path.exists()


def test_checkouts_are_read_only(tmp_path: Path) -> None:
    s = shared(tmp_path)
    with s.checkout("k", open_source=lambda: FakeSource(tmp_path / "src")) as co:
        for p in (co.path, co.path / "apps", co.path / "apps" / "app.yaml"):
            assert p.stat().st_mode & 0o222 == 0, f"{p} is writable"
        if os.geteuid() == 0:
            return  # root writes whatever the mode says; the modes above are what a non-root controller meets
        with pytest.raises(PermissionError):
            (co.path / "apps" / "app.yaml").write_text("changed")
        with pytest.raises(PermissionError):
            (co.path / "new.yaml").write_text("x")


def test_unused_checkouts_are_evicted_oldest_first_past_the_count(tmp_path: Path) -> None:
    clock = Clock()
    s = shared(tmp_path, clock, max_checkouts=2)
    sources = {k: FakeSource(tmp_path / k) for k in "abc"}
    held = s.checkout("a", open_source=lambda: sources["a"])
    for k in "bc":
        clock.now += 1
        s.checkout(k, open_source=lambda k=k: sources[k]).release()  # type: ignore[misc]
    assert s.stats()[:2] == (2, 2), "b, the oldest unused, went; a is in use"
    assert sources["b"].closed
    assert not sources["a"].closed
    assert not sources["c"].closed
    held.release()
    assert held.path.exists()


def test_unused_checkouts_are_evicted_past_the_bytes(tmp_path: Path) -> None:
    s = shared(tmp_path, max_bytes=1)
    a = FakeSource(tmp_path / "a")
    co = s.checkout("a", open_source=lambda: a)
    assert co.path.exists(), "in use: kept whatever the bounds"
    co.release()
    assert not co.path.exists()
    assert s.stats() == (0, 0, 0)
    assert a.closed


def test_keys_differ_by_credentials() -> None:
    k = {"kind": "git", "location": "https://git.example/fleet", "ref": "branch=main"}
    assert source_key(**k, credentials="") != source_key(**k, credentials="team-a/deploy-key")
    assert source_key(**k, credentials="team-a/key") == source_key(**k, credentials="team-a/key")


def test_one_request_invalidates_once_however_many_gitsyncs_carry_it(tmp_path: Path) -> None:
    src = FakeSource(tmp_path / "src")
    s = shared(tmp_path, fresh_for=60.0)
    s.checkout("k", open_source=lambda: src).release()
    for _ in range(100):  # a push wakes a hundred GitSyncs, all answering the same request
        s.invalidate("k", token="webhook:push-1")
        s.checkout("k", open_source=lambda: src).release()
    assert src.fetches == 2
    assert s.invalidate("k", token="webhook:push-2") is True
    assert s.invalidate("k", token="webhook:push-2") is False
    s.checkout("k", open_source=lambda: src).release()
    assert src.fetches == 3


def test_a_flight_started_before_an_invalidate_is_not_joined(tmp_path: Path) -> None:
    """The fetch in flight may have read the remote before the push: a reader that comes after
    the push must get a fetch that started after it."""
    gate = threading.Event()
    src = FakeSource(tmp_path / "src", gate=gate)
    s = shared(tmp_path)
    first = threading.Thread(target=lambda: s.checkout("k", open_source=lambda: src).release())
    first.start()
    deadline = time.monotonic() + 5
    while src.concurrent != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.invalidate("k", token="webhook:push")  # entry exists: the flight registered it
    got: list[int] = []
    second = threading.Thread(target=lambda: got.append(_fetches_seen(s, src)))
    second.start()
    time.sleep(0.2)
    gate.set()
    first.join(10)
    second.join(10)
    assert src.fetches == 2, "the reader after the push waited out the old flight and fetched again"
    assert got == [2]


def _fetches_seen(s: SharedSources, src: FakeSource) -> int:
    with s.checkout("k", open_source=lambda: src):
        return src.fetches


def test_a_reader_never_gets_the_fetch_it_saw_last_time_but_the_fleet_shares_it(tmp_path: Path) -> None:
    """One GitSync's next reconcile must see a newer fetch than its last (a commit pushed since
    is found), while the other GitSyncs of the fleet still share whatever is fresh."""
    src = FakeSource(tmp_path / "src")
    s = shared(tmp_path, fresh_for=60.0)
    with s.checkout("k", open_source=lambda: src) as mine:
        seen = mine.seq
    with s.checkout("k", open_source=lambda: src):  # another GitSync: shares it
        pass
    assert src.fetches == 1
    with s.checkout("k", open_source=lambda: src, after=seen) as again:
        assert again.seq > seen
    assert src.fetches == 2
