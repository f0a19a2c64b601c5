"""What a chart fetch returns, whatever the place the chart came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChartArtifact:
    """One resolved chart, unpacked on disk, ready for ``render.helm.render_chart``.

    ``digest`` is what the chart is pinned by: the archive's sha256 for an HTTP repository
    (checked against the index), the manifest digest for OCI, the tree digest for a path.
    ``revision`` goes into the GitSync's revision string and status.
    """

    name: str
    version: str
    digest: str  # "sha256:<hex>"
    path: Path
    source: str  # repository URL, oci:// reference or path (no credentials)

    @property
    def revision(self) -> str:
        return f"{self.name}@{self.version}@{self.digest}"
