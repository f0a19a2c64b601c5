"""Tests drive the pipeline over manifests they built themselves (no source, no render step)."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.gitsync.cluster import KubeCluster
from reconciler.gitsync.errors import StepError
from reconciler.gitsync.pipeline import Given, sync_revision
from reconciler.gitsync.results import Progress, SyncOptions, SyncResult
from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper
from reconciler.render.manifests import Manifest


def run_sync(
    kube: Kube,
    mapper: RestMapper,
    *,
    manifests: Sequence[Manifest],
    revision: str,
    options: SyncOptions,
    progress: Progress | None = None,
) -> SyncResult:
    """One sync of ``manifests``: what a step found comes back in the result (``res.errors``, ``res.stage``),
    so a test asserts on it; an API server or inventory failure raises the exception underneath."""
    try:
        return sync_revision(
            steps=Given(manifests, revision),
            cluster=KubeCluster(kube, mapper, options),
            options=options,
            progress=progress,
        )
    except StepError as e:
        if e.result is not None:
            return e.result
        raise (e.__cause__ or e) from None
