"""The chart flags of ``render``, ``diff`` and ``sync``: the same chart a GitSync's ``spec.helm`` names.

So a chart and its values can be checked in CI before they are pushed, the flags build the very
:class:`~reconciler.gitsync.helmspec.HelmSpec` a GitSync would have (through ``parse_helm``, with
its checks) and render it with the same :func:`~reconciler.gitsync.helmrender.render_helm`. The
names follow Helm's and Flux's: ``--chart`` (a path in the source, an ``https://`` repository
with ``--chart-name``, or ``oci://host/path/name``), ``--chart-version`` (a semver range),
``--values FILE`` (repeatable, merged in order, then the chart's own defaults under them) and
``--release-name``; ``--target-namespace`` is the release namespace, as in a GitSync.

Offline, ``.Capabilities`` is Helm's built-in default (no cluster is asked); a chart that
depends on the cluster's API versions renders as ``helm template`` without ``--api-versions``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler.gitsync.helmrender import HelmInputs, HelmRender, render_helm
from reconciler.gitsync.helmspec import HelmSpec, parse_helm
from reconciler.gitsync.spec import SpecError
from reconciler.render.helm_cache import RenderCache
from reconciler.render.helm_values import ValuesError, merge_values
from reconciler.render.manifests import Manifest
from reconciler.source.artifact import Artifact
from reconciler.source.charts import ChartCache
from reconciler.source.charts.resolver import ChartResolver

DEFAULT_RELEASE = "release"


def chart_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--chart",
            default=None,
            help="Render this Helm chart instead of PATH's manifests: a path in the source, "
            "an https:// repository (with --chart-name) or oci://host/path/name.",
        ),
        click.option("--chart-name", default=None, help="With an https:// --chart: the chart's name in its index."),
        click.option("--chart-version", default=None, help="With a repository chart: version or semver range [*]."),
        click.option(
            "--values",
            "values_files",
            multiple=True,
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            metavar="FILE",
            help="Values file for --chart (repeatable; later files win).",
        ),
        click.option("--release-name", default=None, help=f"With --chart: the release name [{DEFAULT_RELEASE}]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _raw_chart(kw: dict[str, Any]) -> dict[str, Any]:
    """``chart.spec`` as a GitSync would write it for the flags."""
    chart, name, version = kw["chart"], kw.get("chart_name"), kw.get("chart_version")
    spec: dict[str, Any]
    if chart.startswith("oci://"):
        url, _, name = chart.rstrip("/").rpartition("/")
        spec = {"chart": name, "repository": {"url": url}}
    elif chart.startswith(("https://", "http://")):
        if not name:
            raise click.BadParameter("an https:// repository needs --chart-name", param_hint="--chart")
        spec = {"chart": name, "repository": {"url": chart}}
    else:
        spec = {"chart": chart}
    if version:
        spec["version"] = version
    return {"spec": spec}


def _values(kw: dict[str, Any], chart: dict[str, Any]) -> dict[str, Any]:
    """The merged ``--values`` files; a file that is not YAML is a usage error naming the chart
    (and the version asked for), as the same file named by a GitSync would be."""
    files = []
    for path in kw.get("values_files") or ():
        try:
            files.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise click.BadParameter(f"{path}: cannot read it as text: {e}", param_hint="--values") from e
    try:
        return merge_values(files=files, references=(), objects={}, inline={}).values
    except ValuesError as e:
        spec = chart["spec"]
        label = spec["chart"] + (f" (version '{spec['version']}')" if spec.get("version") else "")
        raise click.BadParameter(f"chart {label}: {e}", param_hint="--values") from e


def helm_spec(kw: dict[str, Any]) -> HelmSpec | None:
    """The chart the flags name (None without ``--chart``); a bad flag is a usage error."""
    if not kw.get("chart"):
        return None
    chart = _raw_chart(kw)
    raw: dict[str, Any] = {"chart": chart, "values": _values(kw, chart)}
    if kw.get("target_namespace"):
        raw["targetNamespace"] = kw["target_namespace"]
    try:
        return parse_helm(raw, gitsync_name=kw.get("release_name") or DEFAULT_RELEASE)
    except SpecError as e:
        raise click.BadParameter(str(e).replace("spec.helm.", ""), param_hint="--chart") from e


def render_chart(artifact: Artifact, spec: HelmSpec, *, namespace: str, cache_dir: Path | None) -> HelmRender:
    """Resolve and render ``spec`` against the fetched ``artifact`` (no cluster: Helm's defaults)."""
    resolver = ChartResolver(cache=ChartCache(cache_dir / "charts") if cache_dir else None)
    inputs = HelmInputs(root=artifact.path, spec=spec, namespace=namespace)
    return render_helm(inputs, resolver=resolver, cache=RenderCache(max_entries=1))


def everything(out: HelmRender) -> list[Manifest]:
    """What ``render`` prints: CRDs, objects, then hooks (annotations kept, so they read as hooks)."""
    hooks = [Manifest(obj=h.obj, file=h.source, doc=0) for h in out.hooks]
    return [*out.crds, *out.manifests, *hooks]
