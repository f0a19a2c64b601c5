"""A folder on disk as a source (``reconciler sync --dir``; later, a watched folder).

Its revision is a digest of the file names and contents, so an unchanged folder keeps
its revision and any edit gives a new one, the same way a git commit would.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from reconciler.source.artifact import Artifact, SourceError
from reconciler.source.limits import DEFAULT, Tally, TreeLimits

_CHUNK = 1 << 20


def tree_digest(root: Path, *, limits: TreeLimits = DEFAULT) -> str:
    """``sha256:<hex>`` over the names and contents of the files under ``root`` (or of ``root``
    itself when it is a file), hidden ones skipped.

    Streams each file in chunks and checks every size against ``limits`` before reading it, so
    a huge file or tree is a :class:`TreeLimitError` naming it rather than an exhausted memory.
    Symlinks are not followed (a link's target is hashed, not what it points to): a caller that
    confined ``root`` cannot be led out of it here.
    """
    h = hashlib.sha256()
    tally = Tally(limits)
    base = root.parent if root.is_file() else root
    for p in [root] if root.is_file() else _files(root):
        rel = p.relative_to(base).as_posix()
        st = p.lstat()
        h.update(rel.encode() + b"\0")
        if stat.S_ISLNK(st.st_mode):
            h.update(b"link\0" + str(p.readlink()).encode("utf-8", "surrogateescape"))
            continue
        tally.add(rel, st.st_size)
        f = hashlib.sha256()
        with p.open("rb") as fh:
            read = 0
            while chunk := fh.read(_CHUNK):
                read += len(chunk)
                if read > limits.max_file_bytes:  # grew while we read it
                    tally.add(rel, read)
                f.update(chunk)
        h.update(f.digest())
    return "sha256:" + h.hexdigest()


def _files(root: Path) -> list[Path]:
    """Regular files and symlinks under ``root`` in a stable order, hidden names and their contents skipped."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not descend into linked folders
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        d = Path(dirpath)
        for name in filenames + [n for n in dirnames if (d / n).is_symlink()]:
            if not name.startswith("."):
                p = d / name
                mode = p.lstat().st_mode
                if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                    out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).parts)  # the order rglob gave before


class LocalSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self) -> Artifact:
        if not self.path.is_dir():
            raise SourceError("not a directory", url=str(self.path))
        try:
            return Artifact(revision=tree_digest(self.path), path=self.path)
        except OSError as e:
            raise SourceError(f"cannot read: {e}", url=str(self.path)) from None
        except SourceError as e:
            raise SourceError(e.reason, url=str(self.path)) from None

    def close(self) -> None:
        """Nothing to release; present so every source can be used the same way."""
