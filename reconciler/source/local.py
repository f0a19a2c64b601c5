"""A folder on disk as a source (``reconciler sync --dir``; later, a watched folder).

Its revision is a digest of the file names and contents, so an unchanged folder keeps
its revision and any edit gives a new one, the same way a git commit would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from reconciler.source.artifact import Artifact, SourceError


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        h.update(str(rel).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


class LocalSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self) -> Artifact:
        if not self.path.is_dir():
            raise SourceError("not a directory", url=str(self.path))
        try:
            return Artifact(revision=tree_digest(self.path), path=self.path)
        except OSError as e:
            raise SourceError(f"cannot read: {e}", url=str(self.path)) from e

    def close(self) -> None:
        """Nothing to release; present so every source can be used the same way."""
