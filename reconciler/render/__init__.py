"""Turn the files of one revision into Kubernetes objects, offline.

Never talks to the network (enforced by import-linter): rendering must give the same
objects for the same revision on a laptop, in CI and in the cluster.  The entry point is
``build.render``; the names below are re-exported for callers."""

from reconciler.render.build import Limits, Manifest, ManifestError, Patch, RenderError, RenderOptions, render

__all__ = ["Limits", "Manifest", "ManifestError", "Patch", "RenderError", "RenderOptions", "render"]
