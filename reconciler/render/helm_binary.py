"""Finding the pinned Helm binary, the same way :mod:`reconciler.render.kustomize` finds kustomize.

Helm is built from the Go module proxy by ``scripts/build-tool helm`` (never downloaded), and
the renderer must run the exact version the docs and tests were written against: charts use
``semverCompare`` on ``.Capabilities.HelmVersion`` and template functions change between
releases.  Lookup order: ``$RECONCILER_HELM``, then ``helm`` on PATH, then the newest build of
the pinned version in the shared tool cache.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reconciler.render.errors import RenderError

HELM_MODULE = "helm.sh/helm/v4"
# Helm v4: its go.mod asks for go 1.26, which the toolchain here has; kustomize v5.8.2's
# helmCharts generator accepts Helm 3 and 4 (it checks the major of `helm version --short`).
HELM_VERSION = "v4.3.2"
ENV_BINARY = "RECONCILER_HELM"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-reconciler" / "bin"


def find_binary() -> str | None:
    """$RECONCILER_HELM, else ``helm`` on PATH, else the newest build of the pin in the cache."""
    if env := os.environ.get(ENV_BINARY):
        return env
    if found := shutil.which("helm"):
        return found
    builds = sorted(cache_root().glob(f"helm-{HELM_VERSION}-*/helm"), key=lambda p: p.stat().st_mtime)
    builds = [p for p in builds if os.access(p, os.X_OK)]
    return str(builds[-1]) if builds else None


def require_binary(file: str) -> str:
    """The Helm binary to run, or RenderError naming ``file`` (what needed Helm) and how to get it."""
    binary = find_binary()
    if binary is None:
        raise RenderError(
            file,
            None,
            f"helm is needed but not installed: run `scripts/build-tool helm` (builds {HELM_MODULE}/cmd/helm@"
            f"{HELM_VERSION}), put helm on PATH, or set {ENV_BINARY}",
        )
    if not os.access(binary, os.X_OK):
        raise RenderError(file, None, f"helm binary {binary} is not executable (from ${ENV_BINARY} or PATH)")
    return binary
