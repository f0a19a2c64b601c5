"""A chart that lives in the GitSync's own source tree (git checkout or bucket snapshot).

Nothing is downloaded: the chart is read in place.  Its digest is a sha256 over the sorted
(path, content) of its files, so the revision string changes exactly when the chart does,
and the render cache can key on it like on a downloaded chart's digest.  The path must stay
inside the tree, and no symlink in the chart may lead out of it (Helm's loader follows them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml

from reconciler.source.artifact import SourceError
from reconciler.source.charts.archive import ArchiveLimits
from reconciler.source.charts.model import ChartArtifact


def chart_from_tree(root: Path, path: str, *, limits: ArchiveLimits | None = None) -> ChartArtifact:
    """The chart at ``path`` (relative to ``root``), or SourceError naming the path and the cause."""
    limits = limits or ArchiveLimits()
    root = root.resolve()
    if Path(path).is_absolute():
        raise SourceError(f"chart {path}: the chart path must be relative to the source root")
    try:
        chart_dir = (root / path).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceError(f"chart {path}: no such directory in the source") from None
    if not chart_dir.is_relative_to(root):
        raise SourceError(f"chart {path}: points outside the source (via '..' or a symlink)")
    meta_file = chart_dir / "Chart.yaml"
    if not meta_file.is_file():
        raise SourceError(f"chart {path}: not a Helm chart (no Chart.yaml)")
    try:
        meta = yaml.safe_load(meta_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise SourceError(f"chart {path}: Chart.yaml is not valid YAML") from None
    if not isinstance(meta, dict) or not meta.get("name") or meta.get("version") is None:
        raise SourceError(f"chart {path}: Chart.yaml needs a name and a version")
    h = hashlib.sha256()
    total = count = 0
    for p in sorted(chart_dir.rglob("*")):
        rel = p.relative_to(chart_dir).as_posix()
        if p.is_symlink() and not p.resolve().is_relative_to(root):
            raise SourceError(f"chart {path}: {rel} is a symlink leading out of the source")
        if not p.is_file():
            continue
        count += 1
        total += p.stat().st_size
        if count > limits.max_entries or total > limits.max_total_bytes:
            raise SourceError(f"chart {path}: larger than the chart size limits")
        h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return ChartArtifact(
        name=str(meta["name"]),
        version=str(meta["version"]),
        digest="sha256:" + h.hexdigest(),
        path=chart_dir,
        source=path,
    )
