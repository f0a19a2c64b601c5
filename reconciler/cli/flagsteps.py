"""The CLI's steps for the pipeline: the revision the source flags name, rendered as the render flags say.

Handed to :func:`reconciler.gitsync.pipeline.sync_revision` by ``sync``, ``diff`` and
``sync --dir --watch``; the source stays open (on ``stack``) until the sync is over.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import policy
from reconciler.cli import charts, decrypting
from reconciler.cli.common import open_source, render_artifact
from reconciler.gitsync.errors import PolicyFailedError, RenderFailedError, SourceFailedError
from reconciler.gitsync.rendered import Rendered
from reconciler.gitsync.results import Stage
from reconciler.render.manifests import ManifestError
from reconciler.report import redact
from reconciler.source.artifact import Artifact, SourceError

# What the CLI's source and render steps report as a failure (anything else is a usage error or a bug).
_FAILURES = (SourceError, ManifestError, OSError, ValueError)


@dataclass
class FlagSteps:
    """The :class:`~reconciler.gitsync.pipeline.Steps` of one command line."""

    kw: dict[str, Any]  # the command's flags
    stack: contextlib.ExitStack  # holds the source open until the sync is over
    revision: str = ""  # default "": set once fetched
    secrets: frozenset[str] = frozenset()  # default empty: Secret values of what it rendered, masked in output

    def fetch(self) -> Artifact:
        try:
            artifact = self.stack.enter_context(open_source(self.kw))
        except _FAILURES as e:
            raise SourceFailedError(str(e), stage=Stage.SOURCE) from e
        self.revision = artifact.revision
        return artifact

    def render(self, artifact: Artifact) -> Rendered | None:
        spec = charts.helm_spec(self.kw)
        try:
            if spec is not None:  # --chart: the chart, rendered as a GitSync's spec.helm is
                namespace = self.kw.get("target_namespace") or self.kw.get("default_namespace") or "default"
                out = charts.render_chart(artifact, spec, namespace=namespace, cache_dir=self.kw.get("cache_dir"))
                self.secrets = redact.secret_values(charts.everything(out))
                return Rendered(manifests=out.manifests, chart=out)
            manifests = render_artifact(artifact, self.kw)
        except _FAILURES as e:
            raise RenderFailedError(str(e), stage=Stage.RENDER) from e
        self.secrets = redact.secret_values(manifests) | decrypting.decrypted_values(manifests)
        return Rendered(manifests=manifests)

    def policies(self) -> policy.PolicySet | None:
        """Loaded for every sync: edited policy files take effect at once (also with --watch)."""
        if not self.kw.get("policies"):
            return None
        try:
            return policy.load_policies(self.kw["policies"])
        except policy.PolicyError as e:
            raise PolicyFailedError(str(e), stage=Stage.POLICY) from e

    def hold(self, revision: str) -> bool:
        return False  # a command line always syncs what it was given

    def report(self, violations: Sequence[policy.Violation]) -> None:
        return None  # printed with the result, after the table
