"""Materialise a commit's tree as plain files, and keep only the snapshots someone still uses.

The tree is written from the object database rather than with ``git archive`` or checkout:
those honour the repository's own ``.gitattributes`` (``export-ignore``, eol conversion, smudge
filters), so the files on disk could differ from the commit. Every path and symlink is checked,
because a hostile repository could otherwise make the renderer read files outside its tree
(the controller's service-account token, for one).

Each snapshot directory has a sibling ``<name>.lock`` that its owner holds with a shared flock
for as long as it hands the directory out; :func:`collect` removes every snapshot nobody holds,
which also cleans up after crashed processes.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import git

from reconciler.source import limits as limits_
from reconciler.source import lock
from reconciler.source.artifact import Artifact
from reconciler.source.limits import TreeLimits


class UnsafeTreeError(Exception):
    """The commit (or bucket) holds a path or symlink that would escape the snapshot directory."""


@dataclass(frozen=True)
class Snapshot:
    path: Path
    lock_fd: int

    def release(self) -> None:
        """Remove the directory, then let go of the lock (the other order races with collect())."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.with_name(self.path.name + ".lock").unlink(missing_ok=True)
        os.close(self.lock_fd)


class Handed:
    """The snapshot a source handed out last (git and bucket sources alike).

    It stays on disk until the next revision replaces it, because a sync may still be reading
    it; the same revision is handed out again without a new export; closing the source
    removes it.  Callers hold the source's mutex around every call.
    """

    def __init__(self) -> None:
        self._current: tuple[Artifact, Snapshot] | None = None

    def same(self, revision: str) -> Artifact | None:
        """The artifact already handed out, if it is of ``revision`` and still on disk (the cache
        directory may have been deleted under us: then the revision is exported again)."""
        if self._current is not None and self._current[0].revision == revision and self._current[0].path.is_dir():
            return self._current[0]
        return None

    def hand_out(self, snap: Snapshot, *, revision: str) -> Artifact:
        """``snap`` as the artifact of ``revision``; the one handed out before is removed."""
        artifact = Artifact(revision=revision, path=snap.path)
        previous, self._current = self._current, (artifact, snap)
        if previous is not None:
            previous[1].release()
        return artifact

    def release(self) -> None:
        if self._current is not None:
            self._current[1].release()
            self._current = None


def create(repo: git.Repo, sha: str, *, root: Path, limits: TreeLimits = limits_.DEFAULT) -> Snapshot:
    """Export ``sha`` into a new directory under ``root``; nothing is left behind on failure.

    The tree's entries and blob sizes (object headers, no content) are checked against ``limits``
    before the first byte is written: a compressible multi-gigabyte blob is a few kilobytes on
    the wire and in the pack, and only its export would fill the cache volume.

    Call with the cache lock held, so collect() cannot see the directory before its lock is taken.
    """
    items = _entries(repo.commit(sha).tree, limits)
    snap = allocate(root, sha[:12])
    try:
        _export(items, snap.path)
    except BaseException:
        snap.release()
        raise
    return snap


def allocate(root: Path, label: str) -> Snapshot:
    """A new, empty, locked snapshot directory under ``root`` for any source to fill; the caller
    releases it if filling fails, so a half-written tree is never handed out."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"{label}-{uuid.uuid4().hex[:8]}"
    fd = lock.hold_shared(root / f"{name}.lock")
    snap = Snapshot(path=root / name, lock_fd=fd)
    try:
        snap.path.mkdir()
    except BaseException:
        snap.release()
        raise
    return snap


def collect(root: Path) -> None:
    """Remove snapshots no live GitSource holds (left by closed sources or dead processes)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.suffix == ".lock":
            continue
        lock_path = entry.with_name(entry.name + ".lock")
        if lock.is_unused(lock_path):
            shutil.rmtree(entry, ignore_errors=True)
            lock_path.unlink(missing_ok=True)
    for stale in root.glob("*.lock"):
        if not stale.with_suffix("").exists() and lock.is_unused(stale):
            stale.unlink(missing_ok=True)


def _entries(tree: git.Tree, limits: TreeLimits) -> list[git.objects.base.IndexObject]:
    """Every entry of ``tree``; :class:`TreeLimitError` naming the first one past a cap."""
    tally = limits_.Tally(limits)
    items: list[git.objects.base.IndexObject] = []
    for item in tree.traverse():
        assert not isinstance(item, tuple)
        size = item.size if isinstance(item, git.Blob) else 0  # from the object header, not the content
        tally.add(str(item.path), size)
        items.append(item)
    return items


def _export(items: list[git.objects.base.IndexObject], dest: Path) -> None:
    links: list[tuple[Path, str]] = []
    for item in items:
        target = dest.joinpath(*safe_parts(str(item.path)))
        target.parent.mkdir(parents=True, exist_ok=True)
        if not isinstance(item, git.Blob):
            # A tree, or a submodule: an empty directory, as after a checkout without --recurse-submodules.
            target.mkdir(exist_ok=True)
        elif stat.S_ISLNK(item.mode):
            links.append((target, item.data_stream.read().decode("utf-8", "surrogateescape")))
        else:
            mode = 0o755 if item.mode & 0o100 else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            with os.fdopen(fd, "wb") as f:
                item.stream_data(f)
            target.chmod(mode)  # the umask may have narrowed it
    # Symlinks last: no file is ever written through one, and a name that is both a
    # directory and a link in a crafted tree fails on creation instead of redirecting writes.
    for target, link in links:
        rel = PurePosixPath(os.path.relpath(target, dest))
        if link.startswith("/") or ".." in PurePosixPath(os.path.normpath(rel.parent / link)).parts:
            raise UnsafeTreeError(f"symlink {rel} -> {link} points outside the repository")
        target.symlink_to(link)
    real_dest = os.path.realpath(dest)
    for target, link in links:
        # Lexical checks miss ``a/..`` where ``a`` is itself a link; the resolved path does not.
        resolved = os.path.realpath(target)
        if os.path.commonpath([real_dest, resolved]) != real_dest:
            raise UnsafeTreeError(f"symlink {os.path.relpath(target, dest)} -> {link} resolves outside the repository")


def safe_parts(path: str) -> list[str]:
    """The components of a slash-separated path from a remote source (a git tree, an S3 key),
    refusing any that could escape the snapshot or pose as its metadata once joined to it."""
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", "..") or part.lower() == ".git" or "\\" in part or "\x00" in part:
            raise UnsafeTreeError(f"unsafe path {path!r}")
    return parts
