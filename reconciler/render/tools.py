"""Finding the pinned external tools the renderer runs (kustomize, helm).

They are built from the Go module proxy by ``scripts/build-tool <tool>`` (never downloaded),
and the renderer must run the exact versions the docs and tests were written against: kustomize
output and Helm template functions change between releases.  One lookup order for every tool:
``$RECONCILER_<TOOL>``, then the tool on PATH, then the newest build of the pinned version in
the shared tool cache, the same path ``scripts/build-tool`` prints.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from reconciler.render.errors import RenderError


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gitops-reconciler" / "bin"


@dataclass(frozen=True)
class Tool:
    """One pinned tool: its binary name, Go package, version and override variable."""

    name: str
    package: str
    version: str
    env: str
    install: str = ""  # the command that builds it, when it is not just `scripts/build-tool <name>`

    def find(self) -> str | None:
        """The override variable, else the tool on PATH, else the newest cached build of the pin."""
        if env := os.environ.get(self.env):
            return env
        if found := shutil.which(self.name):
            return found
        builds = sorted(cache_root().glob(f"{self.name}-{self.version}-*/{self.name}"), key=lambda p: p.stat().st_mtime)
        builds = [p for p in builds if os.access(p, os.X_OK)]
        return str(builds[-1]) if builds else None

    def require(self, file: str) -> str:
        """The binary to run, or RenderError naming ``file`` (what needed the tool) and how to get it."""
        binary = self.find()
        if binary is None:
            raise RenderError(
                file,
                None,
                f"{self.name} is needed but not installed: run `{self.install or 'scripts/build-tool ' + self.name}` "
                f"(builds {self.package}@{self.version} with scripts/build-tool {self.name}), put {self.name} on PATH, "
                f"or set {self.env}",
            )
        if not os.access(binary, os.X_OK):
            raise RenderError(file, None, f"{self.name} binary {binary} is not executable (from ${self.env} or PATH)")
        return binary


# Helm v4: its go.mod asks for go 1.26, which the toolchain here has; kustomize v5.8.2's
# helmCharts generator accepts Helm 3 and 4 (it checks the major of `helm version --short`).
HELM = Tool(name="helm", package="helm.sh/helm/v4/cmd/helm", version="v4.3.2", env="RECONCILER_HELM")
