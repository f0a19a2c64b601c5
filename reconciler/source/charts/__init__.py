"""Fetching Helm charts: from an HTTP(S) repository, an OCI registry, or a path in the source.

Each returns a :class:`ChartArtifact` (name, version, digest, unpacked path) for
``render.helm``; every failure is a ``SourceError`` naming the chart, the version and the cause.
"""

from reconciler.source.charts.cache import CacheKey, ChartCache
from reconciler.source.charts.local import chart_from_tree
from reconciler.source.charts.model import ChartArtifact
from reconciler.source.charts.oci import OCIReference, OCIRegistry
from reconciler.source.charts.repository import HelmRepository
from reconciler.source.charts.transport import Credentials, ca_from_secret

__all__ = [
    "CacheKey",
    "ChartArtifact",
    "ChartCache",
    "Credentials",
    "HelmRepository",
    "OCIReference",
    "OCIRegistry",
    "ca_from_secret",
    "chart_from_tree",
]
