"""One fetch and one checkout per (source, revision), shared by every GitSync that reads it.

A fleet repository is read by hundreds of GitSyncs. Fetching it once per GitSync costs one
``git fetch`` (or one bucket listing) and one tree export each, all for the same revision; after
a push they all arrive at once. :class:`SharedSources` puts one fetch in flight per source key:
callers that arrive while it runs wait for its result instead of starting their own (no
thundering herd), and a result younger than ``fresh_for`` is handed out again without asking
the remote (a push hint, :meth:`SharedSources.invalidate`, ends that early).

What callers get is a :class:`Checkout`: the revision's files, hard-linked from the source's
own snapshot into a directory of ours and made read-only, because many renders read it at once
and none may change what another one reads. Each checkout counts its readers; one that is no
longer the newest revision of its source goes as soon as its last reader releases it, and the
newest ones nobody reads are evicted oldest-first once more than ``max_checkouts`` or
``max_bytes`` are on disk.

The key decides who shares: it must name everything that changes what a fetch may return —
the location, the ref and the credentials (see :func:`source_key`). Two GitSyncs with different
Secrets never share a fetch, so a tenant cannot read a repository through another's key.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.source.artifact import Artifact, Source

log = logging.getLogger(__name__)

Clock = Callable[[], float]
_TOKENS = 16  # invalidating requests remembered per key (a few pushes in flight at once)


def source_key(*, kind: str, location: str, ref: str, credentials: str) -> str:
    """The sharing key of a source: ``kind`` (git, bucket), ``location`` (URL, or endpoint and
    bucket and prefix), ``ref`` (as the spec names it) and ``credentials`` (the namespace, name and
    resourceVersion of the Secret, "" when none: a rotated Secret is a new key, so its Source is
    built with the new credentials). Hashed, so it may name a directory and carries no URL secrets."""
    text = "\n".join((kind, location, ref, credentials))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SharedOptions:
    """Bounds of the shared fetches and checkouts."""

    fresh_for: float = 5.0
    """Seconds a fetched revision is handed out again without a new fetch (default 5)."""
    max_checkouts: int = 64
    """Checkouts kept on disk when unused (default 64); ones in use are never removed."""
    max_bytes: int = 2 * 1024**3
    """Bytes of files in checkouts kept on disk when unused (default 2 GiB)."""


@dataclass(eq=False)
class _Tree:
    """One revision on disk, shared; ``readers`` counts handed-out, unreleased Checkouts."""

    key: str
    artifact: Artifact
    size: int
    readers: int = 0
    last_used: float = 0.0


@dataclass(eq=False)
class _Flight:
    """A fetch in progress; ``waiters`` (the fetching caller included) each get one reader."""

    done: threading.Event = field(default_factory=threading.Event)
    waiters: int = 1
    generation: int = 0  # the entry's generation when it started: an invalidate since makes it stale
    seq: int = 0  # the entry's fetch number once landed
    tree: _Tree | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Entry:
    """Per source key: its fetching Source, newest tree, older trees still read, fetch in flight."""

    source: Source | None = None
    current: _Tree | None = None
    fetched_at: float = float("-inf")
    older: list[_Tree] = field(default_factory=list)
    flight: _Flight | None = None
    generation: int = 0  # bumped by each invalidate: a flight of an older generation is not joined
    tokens: list[str] = field(default_factory=list)  # the last requests that invalidated (see invalidate)
    seq: int = 0  # fetches landed for this key: a Checkout's ``seq`` says which one it came from


class Checkout:
    """A read-only revision handed to one reader; :meth:`release` (or ``with``) when done."""

    def __init__(self, owner: SharedSources, tree: _Tree, *, seq: int) -> None:
        self._owner, self._tree, self._released = owner, tree, False
        self.seq = seq  # which fetch of its key it came from (1, 2, ...): pass it as ``after`` next time

    @property
    def artifact(self) -> Artifact:
        return self._tree.artifact

    @property
    def revision(self) -> str:
        return self._tree.artifact.revision

    @property
    def path(self) -> Path:
        return self._tree.artifact.path

    def release(self) -> None:
        """Give the checkout back; a second call does nothing."""
        if not self._released:
            self._released = True
            self._owner._release(self._tree)

    def __enter__(self) -> Checkout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SharedSources:
    """Shared fetches and checkouts under ``root`` (the controller's cache directory)."""

    def __init__(self, *, root: Path, options: SharedOptions | None = None, clock: Clock = time.monotonic) -> None:
        self._root = Path(root)
        self._opts = options or SharedOptions()
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self.fetches = 0  # fetches started, for tests and metrics

    def checkout(self, key: str, *, open_source: Callable[[], Source], after: int = 0) -> Checkout:
        """The newest revision of ``key``: fetched now, awaited from a fetch in flight, or reused
        when fetched less than ``fresh_for`` ago. ``open_source`` builds the key's Source the first
        time. Raises what the fetch raised (SourceError) to every caller that waited for it.

        A flight that started before the last :meth:`invalidate` is not joined: it may have read
        the remote before the push, so the caller waits for it to land and then fetches anew.
        ``after``: the ``seq`` of the caller's previous checkout of ``key``; that fetch is not
        handed out again however fresh, so one reader's next reconcile always sees a newer fetch
        than its last, while the rest of a fleet shares it."""
        while True:
            with self._lock:
                entry = self._entries.setdefault(key, _Entry())
                tree = entry.current
                fresh = self._clock() - entry.fetched_at < self._opts.fresh_for and entry.seq > after
                if tree is not None and entry.flight is None and fresh:
                    tree.readers += 1
                    return Checkout(self, tree, seq=entry.seq)
                flight, leader = entry.flight, entry.flight is None
                if flight is not None and flight.generation != entry.generation:
                    stale: _Flight | None = flight
                else:
                    stale = None
                    if flight is None:
                        flight = entry.flight = _Flight(generation=entry.generation)
                        self.fetches += 1
                    else:
                        flight.waiters += 1
            if stale is None:
                break
            stale.done.wait()
        assert flight is not None
        if leader:
            self._fly(key=key, entry=entry, flight=flight, open_source=open_source)
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.tree is not None
        return Checkout(self, flight.tree, seq=flight.seq)

    def invalidate(self, key: str, *, token: str = "") -> bool:
        """The source moved (a push webhook): the next checkout of ``key`` fetches, and does not
        join a fetch that was already in flight. With a ``token`` (the request a reconcile answers,
        which every GitSync woken by one push carries alike) only its first caller invalidates, so
        a push that wakes a thousand GitSyncs still costs one fetch. True when it invalidated."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False
            if token:
                if token in entry.tokens:
                    return False
                entry.tokens = [*entry.tokens[-(_TOKENS - 1) :], token]
            entry.fetched_at = float("-inf")
            entry.generation += 1
            return True

    def stats(self) -> tuple[int, int, int]:
        """(source keys, checkouts on disk, bytes in them)."""
        with self._lock:
            trees = [t for e in self._entries.values() for t in self._trees(e)]
            return len(self._entries), len(trees), sum(t.size for t in trees)

    def close(self) -> None:
        """Remove every checkout and close every source (at shutdown; readers must be done)."""
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            for tree in self._trees(entry):
                _remove(tree.artifact.path)
            if entry.source is not None:
                entry.source.close()

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _trees(entry: _Entry) -> list[_Tree]:
        return [*entry.older, *([entry.current] if entry.current is not None else [])]

    def _fly(self, *, key: str, entry: _Entry, flight: _Flight, open_source: Callable[[], Source]) -> None:
        """Fetch for every waiter of ``flight``; runs in the first caller's thread, no lock held."""
        doomed: list[_Tree | Source] = []
        try:
            if entry.source is None:
                entry.source = open_source()  # only a flight's leader touches entry.source
            artifact = entry.source.fetch()
            same = (  # a checkout deleted from disk (a wiped cache volume) is made again
                entry.current is not None
                and entry.current.artifact.revision == artifact.revision
                and entry.current.artifact.path.is_dir()
            )
            tree = entry.current if same else self._materialize(key, artifact)
            assert tree is not None
            with self._lock:
                if not same:
                    if entry.current is not None:
                        entry.older.append(entry.current)
                    entry.current = tree
                if flight.generation == entry.generation:  # else invalidated meanwhile: not fresh
                    entry.fetched_at = self._clock()
                tree.readers += flight.waiters
                entry.seq += 1
                flight.tree, flight.seq, entry.flight = tree, entry.seq, None
                doomed = self._evict_locked()
        except BaseException as e:
            with self._lock:
                flight.error, entry.flight = e, None
            raise
        finally:
            flight.done.set()
            self._dispose(doomed)

    def _materialize(self, key: str, artifact: Artifact) -> _Tree:
        dest = self._root / "shared" / key[:16] / f"{_label(artifact.revision)}-{uuid.uuid4().hex[:8]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            size = _link_tree(artifact.path, dest)
        except BaseException:
            _remove(dest)
            raise
        log.debug("checkout %s at %s (%d bytes)", artifact.revision, dest, size)
        return _Tree(key=key, artifact=Artifact(revision=artifact.revision, path=dest), size=size)

    def _release(self, tree: _Tree) -> None:
        with self._lock:
            tree.readers -= 1
            tree.last_used = self._clock()
            doomed = self._evict_locked()
        self._dispose(doomed)

    def _evict_locked(self) -> list[_Tree | Source]:
        """Drop what may go, under the lock; the caller removes it from disk after letting go.

        Older revisions go when nobody reads them. Newest revisions nobody reads go oldest-first
        while the bounds are exceeded, with their key's Source (its own snapshot is disk too)."""
        doomed: list[_Tree | Source] = []
        for entry in self._entries.values():
            keep = [t for t in entry.older if t.readers > 0]
            doomed += [t for t in entry.older if t.readers <= 0]
            entry.older = keep
        trees = [t for e in self._entries.values() for t in self._trees(e)]
        count, size = len(trees), sum(t.size for t in trees)
        idle = sorted(
            ((k, e) for k, e in self._entries.items() if e.current and e.current.readers <= 0 and e.flight is None),
            key=lambda ke: ke[1].current.last_used if ke[1].current else 0.0,
        )
        for key, entry in idle:
            if count <= self._opts.max_checkouts and size <= self._opts.max_bytes:
                break
            assert entry.current is not None
            count, size = count - 1, size - entry.current.size
            doomed.append(entry.current)
            entry.current = None
            if not entry.older:
                del self._entries[key]
                if entry.source is not None:
                    doomed.append(entry.source)
        return doomed

    @staticmethod
    def _dispose(doomed: list[_Tree | Source]) -> None:
        for item in doomed:
            if isinstance(item, _Tree):
                _remove(item.artifact.path)
            else:
                item.close()


def _label(revision: str) -> str:
    """A short, path-safe part of a revision for the directory name (readability only)."""
    tail = revision.rsplit(":", 1)[-1]
    return "".join(c for c in tail[:12] if c.isalnum()) or "rev"


def _link_tree(src: Path, dest: Path) -> int:
    """Hard-link every file of ``src`` into ``dest`` (symlinks copied as links), make the result
    read-only, and return the bytes of its files. Links cost no data copy, and the source's
    snapshot may be removed afterwards without touching ours."""
    size = 0
    dirs: list[Path] = []
    for here, subdirs, files in os.walk(src):
        rel = Path(here).relative_to(src)
        target = dest / rel
        target.mkdir(exist_ok=rel != Path())
        dirs.append(target)
        for name in [*subdirs, *files]:
            path = Path(here) / name
            if path.is_symlink():
                (target / name).symlink_to(path.readlink())
                if name in subdirs:
                    subdirs.remove(name)  # os.walk would not follow it anyway
            elif name in files:
                _link_or_copy(path, target / name)
                st = path.stat()
                size += st.st_size
                (target / name).chmod(stat.S_IMODE(st.st_mode) & ~0o222)
    for d in reversed(dirs):
        d.chmod(0o555)
    return size


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link; a copy when the cache spans two filesystems (a link cannot cross them)."""
    try:
        os.link(src, dest)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copy2(src, dest)


def _remove(path: Path) -> None:
    """Remove a read-only checkout: give its directories write permission back first."""
    if not path.exists():
        return
    for here, subdirs, _ in os.walk(path):
        Path(here).chmod(0o700)
        for name in subdirs:
            sub = Path(here) / name
            if not sub.is_symlink():
                sub.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)
