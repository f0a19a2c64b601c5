"""``spec.helm`` of a GitSync, read once into typed values: which chart, which values, how to render.

The field names follow Flux's HelmRelease (``chart.spec.chart``/``version``, ``releaseName``,
``targetNamespace``, ``values``, ``valuesFrom``, ``install.crds``/``upgrade.crds``) so a Flux
user recognises them.  Flux points at a separate HelmRepository object; a GitSync has no such
object, so ``chart.spec.repository`` carries the HelmRepository fields a fetch needs (``url``,
``secretRef``, ``certSecretRef``, ``provider``, ``insecure``) inline.  Without ``repository``
the chart is a path in the GitSync's own source, as Flux's GitRepository-sourced charts are.

As with the rest of the spec, the CRD schema checks most of this at admission, and everything is
checked again here (a CRD without validation, an older schema): every error names the field.
Secret names are only names: the GitSync's own identity reads them later, never the controller's.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from reconciler.gitsync.spec import SpecError, namespace_name, object_name, parse_duration
from reconciler.render.helm_values import DEFAULT_VALUES_KEY, ValuesReference
from reconciler.source.charts import semver

WHERE = "spec.helm"
_CHART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RELEASE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_RELEASE_NAME = 53  # Helm's limit: the name ends up in labels with a suffix


class ChartOrigin(StrEnum):
    """Where the chart comes from: decided by ``repository.url`` (absent: the source itself)."""

    SOURCE = "source"  # a path in the GitSync's own git checkout or bucket snapshot
    REPOSITORY = "repository"  # an HTTP(S) Helm repository (index.yaml)
    OCI = "oci"  # an OCI registry (oci://)


class CRDPolicy(StrEnum):
    """What happens to the chart's ``crds/`` (Flux's ``install.crds``/``upgrade.crds`` values)."""

    SKIP = "Skip"  # never apply them
    CREATE = "Create"  # create missing CRDs, leave existing ones as they are
    CREATE_REPLACE = "CreateReplace"  # create, and update existing ones to the chart's version


class Provider(StrEnum):
    """Who supplies registry credentials when no ``secretRef`` is given."""

    GENERIC = "generic"  # anonymous, or the secretRef
    AWS = "aws"  # ECR: a token from boto3 with the controller's AWS identity


@dataclass(frozen=True)
class Phase:
    """``install`` or ``upgrade``: what to do with CRDs and hooks on the first sync / on later ones."""

    crds: CRDPolicy  # Flux's defaults: Create on install, Skip on upgrade
    disable_hooks: bool = False  # true: the phase's hooks are neither applied nor awaited; default false


@dataclass(frozen=True)
class ChartRepository:
    """The inline HelmRepository: an HTTP(S) index or an OCI registry path."""

    url: str  # https://host/path (index.yaml under it) or oci://host/path (the chart name is appended)
    secret_ref: str | None = None  # Secret with username/password, or .dockerconfigjson for OCI; default none
    cert_secret_ref: str | None = None  # Secret with ca.crt (a PEM bundle); default: the system's CAs
    provider: Provider = Provider.GENERIC  # default generic; aws = ECR credentials through boto3
    insecure: bool = False  # OCI only: plain HTTP (a loopback registry); default false


@dataclass(frozen=True)
class ChartSpec:
    """``chart.spec``: the chart and the version range to resolve."""

    chart: str  # the chart name (repository/OCI) or its path in the source (no repository)
    version: str = "*"  # an exact version or a Helm semver range; default "*" (the newest release)
    repository: ChartRepository | None = None  # default none: the chart is a path in the source

    @property
    def origin(self) -> ChartOrigin:
        if self.repository is None:
            return ChartOrigin.SOURCE
        return ChartOrigin.OCI if self.repository.url.startswith("oci://") else ChartOrigin.REPOSITORY


@dataclass(frozen=True)
class HelmSpec:
    """Everything ``spec.helm`` says; defaults are Flux's where Flux has one."""

    chart: ChartSpec
    release_name: str  # default: the GitSync's name
    target_namespace: str | None = None  # default none: the GitSync's targetNamespace, else its namespace
    interval: float | None = None  # seconds a resolved chart is reused without asking; default none: every reconcile
    values: Mapping[str, Any] = field(default_factory=dict)  # inline values, applied last; default {}
    values_files: tuple[str, ...] = ()  # paths in the source (from its root), merged first; default none
    values_from: tuple[ValuesReference, ...] = ()  # ConfigMap/Secret keys, merged between; default none
    install: Phase = Phase(crds=CRDPolicy.CREATE)  # the first sync; default crds Create, hooks on
    upgrade: Phase = Phase(crds=CRDPolicy.SKIP)  # every later sync; default crds Skip, hooks on

    def secret_names(self) -> tuple[str, ...]:
        """Every Secret this spec names (auth, CA, valuesFrom): what the GitSync's identity must read."""
        repo = self.chart.repository
        names = [repo.secret_ref, repo.cert_secret_ref] if repo else []
        names += [r.name for r in self.values_from if r.kind == "Secret"]
        return tuple(dict.fromkeys(n for n in names if n))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _only(raw: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field (expected one of {', '.join(allowed)})")


def _string(raw: Mapping[str, Any], key: str, *, where: str, default: str | None = None) -> str | None:
    value = raw.get(key, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SpecError(f"{where}.{key}: must be a non-empty string")
    return value


def _flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{where}.{key}: must be true or false")
    return value


def _ref_name(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    ref = raw.get(key)
    if ref is None:
        return None
    ref = _mapping(ref, f"{where}.{key}")
    _only(ref, ("name",), f"{where}.{key}")
    return object_name(ref.get("name"), f"{where}.{key}.name")


def relative_path(value: Any, where: str) -> str:
    """A path in the source: relative, no ``..`` (the fetch confines it again, symlinks included)."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value or "\\" in value:
        raise SpecError(f"{where}: must be a non-empty relative path")
    p = PurePosixPath(value)
    if p.is_absolute() or ".." in p.parts:
        raise SpecError(f"{where}: {value!r} must be relative to the source root and may not contain '..'")
    return value


def _repository(raw: Any, where: str) -> ChartRepository:
    raw = _mapping(raw, where)
    _only(raw, ("url", "secretRef", "certSecretRef", "provider", "insecure"), where)
    url = _string(raw, "url", where=where)
    if url is None:
        raise SpecError(f"{where}.url: required (https://, http:// or oci://)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "oci") or not parts.hostname:
        raise SpecError(f"{where}.url: {url!r} must be an http://, https:// or oci:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SpecError(f"{where}.url: no credentials, query or fragment in the URL (use secretRef)")
    provider = raw.get("provider", Provider.GENERIC.value)
    if provider not in tuple(Provider):
        raise SpecError(f"{where}.provider: {provider!r} is not one of {', '.join(Provider)}")
    insecure = _flag(raw, "insecure", where)
    if insecure and parts.scheme != "oci":
        raise SpecError(f"{where}.insecure: only for an oci:// registry (an HTTP repository says http:// itself)")
    return ChartRepository(
        url=url.rstrip("/"),
        secret_ref=_ref_name(raw, "secretRef", where),
        cert_secret_ref=_ref_name(raw, "certSecretRef", where),
        provider=Provider(provider),
        insecure=insecure,
    )


def _chart(raw: Any, where: str) -> ChartSpec:
    outer = _mapping(raw, where)
    _only(outer, ("spec",), where)
    where += ".spec"
    spec = _mapping(outer.get("spec"), where)
    _only(spec, ("chart", "version", "repository"), where)
    repository = _repository(spec["repository"], f"{where}.repository") if "repository" in spec else None
    name = _string(spec, "chart", where=where)
    if name is None:
        raise SpecError(f"{where}.chart: required (a chart name, or a path in the source without repository)")
    if repository is None:
        relative_path(name, f"{where}.chart")
    elif not _CHART_NAME.fullmatch(name) or len(name) > 250:
        raise SpecError(f"{where}.chart: {name!r} is not a chart name (letters, digits, '.', '_', '-')")
    version = _string(spec, "version", where=where, default="*") or "*"
    if repository is not None and not semver.is_exact(version):
        try:
            semver.parse_constraint(version)
        except semver.ConstraintError as e:
            raise SpecError(f"{where}.version: {version!r} is not a version or range: {e}") from None
    return ChartSpec(chart=name, version=version.strip(), repository=repository)


def _values_from(raw: Any, where: str) -> tuple[ValuesReference, ...]:
    if not isinstance(raw, list):
        raise SpecError(f"{where}: expected a list")
    out: list[ValuesReference] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        item = _mapping(item, at)
        _only(item, ("kind", "name", "valuesKey", "targetPath", "optional"), at)
        kind = item.get("kind")
        if kind not in ("ConfigMap", "Secret"):
            raise SpecError(f"{at}.kind: {kind!r} must be ConfigMap or Secret")
        key = _string(item, "valuesKey", where=at, default=DEFAULT_VALUES_KEY) or DEFAULT_VALUES_KEY
        if len(key) > 253 or not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
            raise SpecError(f"{at}.valuesKey: {key!r} is not a valid ConfigMap/Secret key")
        target = item.get("targetPath", "")
        if not isinstance(target, str) or len(target) > 250:
            raise SpecError(f"{at}.targetPath: must be a string of at most 250 characters")
        out.append(
            ValuesReference(
                kind=kind,
                name=object_name(item.get("name"), f"{at}.name"),
                values_key=key,
                target_path=target,
                optional=_flag(item, "optional", at),
            )
        )
    return tuple(out)


def _phase(raw: Mapping[str, Any], key: str, *, default: CRDPolicy, skip_crds: bool) -> Phase:
    """``install`` or ``upgrade``; ``skipCRDs`` (Helm's flag, Flux's old field) forces Skip."""
    where = f"{WHERE}.{key}"
    block = _mapping(raw.get(key, {}), where)
    _only(block, ("crds", "disableHooks"), where)
    value = block.get("crds", CRDPolicy.SKIP.value if skip_crds else default.value)
    if value not in tuple(CRDPolicy):
        raise SpecError(f"{where}.crds: {value!r} is not one of {', '.join(CRDPolicy)}")
    if skip_crds and value != CRDPolicy.SKIP:
        raise SpecError(f"{WHERE}.skipCRDs: contradicts {where}.crds: {value}")
    return Phase(crds=CRDPolicy(value), disable_hooks=_flag(block, "disableHooks", where))


def _release_name(raw: Mapping[str, Any], default: str) -> str:
    name = raw.get("releaseName", default)
    if not isinstance(name, str) or len(name) > MAX_RELEASE_NAME or not _RELEASE_NAME.fullmatch(name):
        where = f"{WHERE}.releaseName" if "releaseName" in raw else f"{WHERE}.releaseName (default: the GitSync name)"
        raise SpecError(f"{where}: {name!r} must be a DNS name of at most {MAX_RELEASE_NAME} characters")
    return name


def _values_files(raw: Mapping[str, Any]) -> tuple[str, ...]:
    files = raw.get("valuesFiles", [])
    if not isinstance(files, list):
        raise SpecError(f"{WHERE}.valuesFiles: expected a list of paths")
    return tuple(relative_path(f, f"{WHERE}.valuesFiles[{i}]") for i, f in enumerate(files))


_FIELDS = (
    "chart",
    "interval",
    "releaseName",
    "targetNamespace",
    "values",
    "valuesFiles",
    "valuesFrom",
    "install",
    "upgrade",
    "skipCRDs",
)


def parse_helm(raw: Any, *, gitsync_name: str) -> HelmSpec:
    """``spec.helm`` of the GitSync named ``gitsync_name``; SpecError naming the field otherwise."""
    raw = _mapping(raw, WHERE)
    _only(raw, _FIELDS, WHERE)
    if "chart" not in raw:
        raise SpecError(f"{WHERE}.chart: required (chart.spec.chart names the chart)")
    interval = raw.get("interval")
    if interval is not None and not isinstance(interval, str):
        raise SpecError(f"{WHERE}.interval: must be a duration such as 10m")
    namespace = raw.get("targetNamespace")
    skip_crds = _flag(raw, "skipCRDs", WHERE)
    return HelmSpec(
        chart=_chart(raw["chart"], f"{WHERE}.chart"),
        release_name=_release_name(raw, gitsync_name),
        target_namespace=namespace_name(namespace, f"{WHERE}.targetNamespace") if namespace is not None else None,
        interval=parse_duration(interval, "helm.interval") if interval is not None else None,
        values=dict(_mapping(raw.get("values", {}), f"{WHERE}.values")),
        values_files=_values_files(raw),
        values_from=_values_from(raw.get("valuesFrom", []), f"{WHERE}.valuesFrom"),
        install=_phase(raw, "install", default=CRDPolicy.CREATE, skip_crds=skip_crds),
        upgrade=_phase(raw, "upgrade", default=CRDPolicy.SKIP, skip_crds=skip_crds),
    )
