"""Where kustomize reads decrypted files from: a private folder on a memory file system, gone after the build.

kustomize only reads files, so a kustomization whose resources or ``secretGenerator`` inputs
are SOPS-encrypted must be given the plaintext as files.  They are never written into the
checkout (it is shared, read-only, between GitSyncs, and lives on disk), nor into ``/tmp`` (on
disk in most images).  Instead the build runs in an *overlay*: a folder made with ``mkdtemp``
(mode 0700, owner only) under a memory-backed file system, holding copies of exactly the files
kustomize will read (the kustomization closure that ``kustomize.preflight`` walked) with the
encrypted ones replaced by their plaintext (files mode 0600).  kustomize's own output file goes
there too.  The folder is removed in a ``finally`` as soon as kustomize exits, whatever happened.

Why not something else: kustomize has no in-memory input (a named pipe per file would need one
writer thread per file and breaks kustomize's directory checks), and symlinks back into the
checkout would be refused by ``LoadRestrictionsRootOnly`` (kustomize resolves them).  Copies of
the closure cost little: they are bounded by ``max_total_bytes``, and only a kustomization that
holds an encrypted file is built this way.

Which memory file system: ``$RECONCILER_DECRYPT_DIR`` if set (in a Pod, an ``emptyDir`` with
``medium: Memory``), else ``/dev/shm``; it must be a tmpfs or ramfs (checked in
``/proc/self/mounts``), otherwise the render fails rather than put plaintext on a disk.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from reconciler.render.errors import RenderError

ENV_DIR = "RECONCILER_DECRYPT_DIR"
DEFAULT_DIR = "/dev/shm"  # noqa: S108 (a memory file system, checked below; never a world-readable file)
_MEMORY_FS = frozenset({"tmpfs", "ramfs"})


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount this process sees."""
    try:
        text = Path("/proc/self/mounts").read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((parts[1].replace("\\040", " "), parts[2]))
    return out


def file_system(path: Path) -> str | None:
    """The type of the file system ``path`` is on (the longest mount point that contains it)."""
    real = str(path.resolve())
    best, fstype = "", None
    for point, kind in _mounts():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype


def memory_dir(file: str) -> Path:
    """The memory-backed folder decrypted files may be written under, or RenderError naming ``file``."""
    base = Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)
    if not base.is_dir():
        raise RenderError(
            file, None, f"decrypted files need a memory file system: {base} does not exist (set ${ENV_DIR})"
        )
    fstype = file_system(base)
    if fstype not in _MEMORY_FS:
        raise RenderError(
            file,
            None,
            f"decrypted files are never written to disk: {base} is {fstype or 'of an unknown type'}, not tmpfs "
            f"(set ${ENV_DIR} to a memory-backed folder, e.g. an emptyDir with medium: Memory)",
        )
    return base


@contextlib.contextmanager
def private_dir(file: str, *, prefix: str = "reconciler-sops-") -> Iterator[Path]:
    """A fresh 0700 folder on the memory file system, removed (with all it holds) on exit."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=memory_dir(file)))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def overlay(*, root: Path, files: Iterable[Path], plain: Mapping[Path, bytes], file: str) -> Iterator[Path]:
    """A copy of ``files`` (real paths under ``root``) in a private memory folder, with the files
    in ``plain`` holding their plaintext instead; yields the overlay's root (the same layout as ``root``)."""
    with private_dir(file) as d:
        tree = d / "tree"
        for real in sorted(set(files) | set(plain)):
            rel = real.relative_to(root)
            _write(tree / rel, plain[real] if real in plain else real.read_bytes())
        yield tree
