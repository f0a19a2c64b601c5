"""The Helm render step: from a fetched revision and ``spec.helm`` to manifests, hooks and a revision.

The pipeline calls :func:`render_helm` once per reconcile of a GitSync with ``spec.helm``, in
place of the kustomize/plain render.  Its steps, each one call: resolve the chart (``source/``:
a path in the revision, an HTTP repository or an OCI registry, through the chart cache), merge
the values in Flux's order (``render/helm_values``), render with ``helm template`` through the
render cache, and split the result into what the sync applies when.  The caller has already
read everything from the API server that this needs (ConfigMaps and Secrets the spec names,
with the GitSync's own identity; the kube version and API versions from discovery), so this
step never talks to the cluster and can run in the CLI as well.

Failures keep their type: a chart that cannot be fetched is a ``SourceError`` (the GitSync's
SourceFailed), values or templates that fail are a ``RenderError`` (RenderFailed).  Both name
the chart and the version; neither carries a value that came from a Secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.gitsync.helmspec import ChartOrigin, CRDPolicy, HelmSpec, Phase
from reconciler.render.build import confine
from reconciler.render.errors import RenderError
from reconciler.render.helm import Hook, render_chart
from reconciler.render.helm_cache import RenderCache, RenderKey
from reconciler.render.helm_values import MergedValues, merge_values
from reconciler.render.manifests import Manifest
from reconciler.render.options import Limits
from reconciler.source.artifact import SourceError
from reconciler.source.charts import ChartArtifact, Credentials, ca_from_secret
from reconciler.source.charts.resolver import ChartRequest, ChartResolver

MAX_VALUES_FILE_BYTES = 4 * 1024 * 1024
ObjectData = Mapping[tuple[str, str], Mapping[str, str]]


@dataclass(frozen=True)
class HelmInputs:
    """What the render step needs, all of it already fetched or read."""

    root: Path  # the fetched revision (git checkout or bucket snapshot): chart paths and values files
    spec: HelmSpec
    namespace: str  # the release namespace when spec.targetNamespace is unset (GitSync's targetNamespace or own)
    # (kind, name) -> data of the ConfigMaps and Secrets the spec names (Secret data decoded); default none
    objects: ObjectData = field(default_factory=dict, repr=False)
    kube_version: str | None = None  # the API server's version (discovery); default Helm's built-in
    api_versions: tuple[str, ...] = ()  # "group/version" and "group/version/Kind" from discovery; default none


@dataclass(frozen=True)
class HelmRender:
    """One chart's render, split the way the sync applies it."""

    chart: ChartArtifact  # name, resolved version, digest, where it came from
    # the objects stay out of repr: a rendered Secret (or a Secret value in any object) must not reach a log
    crds: tuple[Manifest, ...] = field(repr=False)  # from crds/: applied per the install/upgrade CRD policy
    manifests: tuple[Manifest, ...] = field(repr=False)  # every other object, including CRDs a template renders
    hooks: tuple[Hook, ...] = field(repr=False)  # pre-/post- install/upgrade hooks in Helm's order
    skipped: tuple[str, ...]  # "Kind/name: why" for test hooks and hooks with no counterpart in a sync
    install: Phase
    upgrade: Phase
    cached: bool  # the render came from the render cache (no helm run)
    sensitive: frozenset[str] = field(default=frozenset(), repr=False)  # Secret-sourced strings: mask them

    @property
    def revision(self) -> str:
        """``name@version@sha256:...``: appended to the source revision in status and history."""
        return self.chart.revision

    def objects(self, *, upgrade: bool) -> list[Manifest]:
        """What to apply: the chart's CRDs (unless the phase's policy is Skip), then the rest."""
        phase = self.upgrade if upgrade else self.install
        crds = [] if phase.crds is CRDPolicy.SKIP else list(self.crds)
        return crds + list(self.manifests)

    def pre_hooks(self, *, upgrade: bool) -> tuple[Hook, ...]:
        """Hooks to apply and wait for before the objects (none when the phase disables hooks)."""
        return self._hooks(("pre-upgrade" if upgrade else "pre-install"), upgrade=upgrade)

    def post_hooks(self, *, upgrade: bool) -> tuple[Hook, ...]:
        """Hooks to apply after the objects are healthy."""
        return self._hooks(("post-upgrade" if upgrade else "post-install"), upgrade=upgrade)

    def _hooks(self, event: str, *, upgrade: bool) -> tuple[Hook, ...]:
        if (self.upgrade if upgrade else self.install).disable_hooks:
            return ()
        return tuple(h for h in self.hooks if event in h.events)


def _secret(objects: ObjectData, name: str | None, *, field_name: str, chart: str) -> Mapping[str, str] | None:
    if name is None:
        return None
    data = objects.get(("Secret", name))
    if data is None:
        raise SourceError(f"chart {chart}: Secret {name!r} ({field_name}) not found")
    return data


def chart_request(spec: HelmSpec, objects: ObjectData) -> ChartRequest:
    """The resolver's request for ``spec``, with credentials and CA read from the named Secrets."""
    chart = spec.chart
    repo = chart.repository
    if repo is None:
        return ChartRequest(chart=chart.chart)
    label = f"{chart.chart}@{chart.version}"
    auth = _secret(objects, repo.secret_ref, field_name="repository.secretRef", chart=label)
    tls = _secret(objects, repo.cert_secret_ref, field_name="repository.certSecretRef", chart=label)
    credentials = Credentials.from_secret(auth)
    if chart.origin is ChartOrigin.OCI and auth is not None:
        host = repo.url.removeprefix("oci://").split("/", 1)[0]
        credentials = Credentials.from_docker_config(auth, host) or credentials
    if auth is not None and credentials is None:
        raise SourceError(f"chart {label}: Secret {repo.secret_ref!r} has neither username nor .dockerconfigjson")
    return ChartRequest(
        chart=chart.chart,
        version=chart.version,
        url=repo.url,
        credentials=credentials,
        ca_pem=ca_from_secret(tls) if tls is not None else None,
        provider="aws" if repo.provider == "aws" else "generic",
        plain_http=repo.insecure,
        recheck_after=spec.interval or 0.0,
    )


def _values_file(root: Path, path: str) -> tuple[str, str]:
    real = confine(root, path)
    if not real.is_file():
        raise RenderError(path, None, "values file is not a file")
    if real.stat().st_size > MAX_VALUES_FILE_BYTES:
        raise RenderError(path, None, f"values file is over {MAX_VALUES_FILE_BYTES} bytes")
    try:
        return path, real.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RenderError(path, None, "values file is not UTF-8 text") from None


def merged_values(inputs: HelmInputs, *, chart: str) -> MergedValues:
    """valuesFiles, then valuesFrom, then inline values (Flux's order); errors name chart and culprit."""
    spec = inputs.spec
    try:
        files = [_values_file(inputs.root, p) for p in spec.values_files]
        return merge_values(files=files, references=spec.values_from, objects=inputs.objects, inline=spec.values)
    except RenderError as e:
        raise RenderError(f"chart {chart}: {e.file}", e.doc, e.why) from None


def _manifests(objs: tuple[dict[str, object], ...], *, label: str) -> tuple[Manifest, ...]:
    return tuple(Manifest(obj=o, file=f"chart {label}", doc=i) for i, o in enumerate(objs))


def render_helm(
    inputs: HelmInputs, *, resolver: ChartResolver, cache: RenderCache, limits: Limits | None = None
) -> HelmRender:
    """Resolve, merge values, render (cached) and split one chart; see the module docstring."""
    spec = inputs.spec
    artifact = resolver.resolve(chart_request(spec, inputs.objects), root=inputs.root)
    label = f"{artifact.name}@{artifact.version}"
    values = merged_values(inputs, chart=label)
    namespace = spec.target_namespace or inputs.namespace
    key = RenderKey.of(
        chart_digest=artifact.digest,
        values=values.values,
        kube_version=inputs.kube_version,
        release_name=spec.release_name,
        namespace=namespace,
        api_versions=inputs.api_versions,
    )
    rendered, cached = cache.get_or_render(
        key,
        lambda: render_chart(
            chart_dir=artifact.path,
            release_name=spec.release_name,
            namespace=namespace,
            values=values.values,
            kube_version=inputs.kube_version,
            api_versions=inputs.api_versions,
            sensitive=values.sensitive,
            limits=limits,
        ),
    )
    return HelmRender(
        chart=artifact,
        crds=_manifests(rendered.crds, label=label),
        manifests=_manifests(rendered.objects, label=label),
        hooks=rendered.hooks,
        skipped=rendered.skipped,
        install=spec.install,
        upgrade=spec.upgrade,
        cached=cached,
        sensitive=values.sensitive,
    )
