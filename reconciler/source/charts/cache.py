"""The on-disk chart cache: one unpacked chart per (repository, name, version, digest).

Why the digest is in the key: a repository may re-publish a version with other content (or
be compromised); a cached chart is only reused for exactly the bytes the index or the
registry names now.  Entries are written to a temp directory and renamed into place, so a
reader never sees half a chart and two fetchers racing both end with a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheKey:
    repository: str  # the repository URL or oci:// reference, without credentials
    name: str
    version: str
    digest: str  # "sha256:<hex>"

    def directory_name(self) -> str:
        raw = json.dumps([self.repository, self.name, self.version, self.digest]).encode()
        return hashlib.sha256(raw).hexdigest()[:40]


def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-reconciler" / "charts"


class ChartCache:
    """Unpacked charts under ``root``; ``get`` is a stat, ``put`` an atomic rename."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    def path(self, key: CacheKey) -> Path:
        return self.root / key.directory_name() / key.name

    def get(self, key: CacheKey) -> Path | None:
        p = self.path(key)
        return p if (p / "Chart.yaml").is_file() else None

    def put(self, key: CacheKey, fill: Callable[[Path], Path]) -> Path:
        """``fill(tmp)`` unpacks the chart under ``tmp`` (returning its dir); the result moves into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key.directory_name()
        tmp = Path(tempfile.mkdtemp(prefix=".fill-", dir=self.root))
        try:
            fill(tmp / "content")
            (tmp / "content" / "key.json").write_text(
                json.dumps(
                    {"repository": key.repository, "name": key.name, "version": key.version, "digest": key.digest}
                )
            )
            try:
                (tmp / "content").rename(final)
            except OSError:
                if self.get(key) is None:  # not a lost race: a real error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.path(key)
