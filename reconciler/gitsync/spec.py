"""The GitSync object's spec, read once into typed values.

The CRD's schema already rejects most bad specs at admission time, but the controller
must not trust that (a CRD installed without validation, an older schema), so every
field is checked again here and a bad one names the field; the controller then reports
it as Stalled rather than crashing its worker.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.kube import paths
from reconciler.policy import PolicyMode
from reconciler.render.options import Patch
from reconciler.report import durations
from reconciler.source.git import GitRef

if TYPE_CHECKING:
    from reconciler.gitsync.helmspec import HelmSpec

GROUP = "gitops.reconciler.dev"
VERSION = "v1"
PLURAL = "gitsyncs"
KIND = "GitSync"
FINALIZER = f"{GROUP}/finalizer"
REQUESTED_AT = f"{GROUP}/requested-at"
WEBHOOK_STAMP = "webhook:"  # requested-at values set by a push webhook (may take the fast path)
ALLOW_MASS_PRUNE = f"{GROUP}/allow-mass-prune"  # a one-shot approval: "<sha or revision>" (gitsync/massprune.py)


class SpecError(ValueError):
    """A spec field is invalid; the message names the field."""


class DriftMode(StrEnum):
    """``spec.drift.mode``: what live drift from git does."""

    CORRECT = "correct"  # reported, and the next sync re-applies at once
    WARN = "warn"  # reported only
    OFF = "off"  # not watched


_Mode = TypeVar("_Mode", PolicyMode, DriftMode)


_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def object_name(value: Any, field_name: str) -> str:
    """A name the spec refers to (Secret, ConfigMap, ServiceAccount, GitSync): an RFC 1123 subdomain.

    Checked here and in the CRD schema because these names end up in API paths read with the
    controller's identity: ``x/../../kube-system/secrets/admin`` must never get that far.
    """
    if not isinstance(value, str) or len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise SpecError(
            f"{field_name}: {value!r} is not a valid object name "
            "(lower-case letters, digits, '-' and '.', at most 253 characters, RFC 1123)"
        )
    return value


def namespace_name(value: Any, field_name: str) -> str:
    """A namespace the spec refers to: an RFC 1123 label."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.fullmatch(value):
        raise SpecError(
            f"{field_name}: {value!r} is not a valid namespace name "
            "(lower-case letters, digits and '-', at most 63 characters, RFC 1123)"
        )
    return value


def gitsync_path(namespace: str | None, name: str | None = None, *, subresource: str | None = None) -> str:
    """The API path of GitSyncs (all namespaces when ``namespace`` is None), one GitSync, or its status."""
    return paths.api_path(
        group=GROUP, version=VERSION, resource=PLURAL, namespace=namespace, name=name, subresource=subresource
    )


def parse_duration(text: str, field_name: str) -> float:
    """Durations as Flux and Kubernetes users write them (``90s``, ``1m30s``, ``1h``; see
    :mod:`reconciler.report.durations`, shared with the CLI flags)."""
    try:
        return durations.parse(text)
    except durations.DurationError as e:
        raise SpecError(f"spec.{field_name}: {e}") from None


@dataclass(frozen=True)
class SecretRef:
    name: str


class DecryptionProvider(StrEnum):
    """``spec.decryption.provider``: who decrypts the source's encrypted files (Flux's field)."""

    SOPS = "sops"  # SOPS files (age, AWS KMS), decrypted by the sops binary in memory


@dataclass(frozen=True)
class DecryptionSpec:
    """``spec.decryption``: decrypt SOPS files before the render (docs/sops.md)."""

    provider: DecryptionProvider = DecryptionProvider.SOPS  # default sops: the only provider
    secret_ref: SecretRef | None = None  # default None: the controller's own keys (its AWS role, SOPS_AGE_KEY)


@dataclass(frozen=True)
class GitSourceSpec:
    url: str
    ref: GitRef
    secret_ref: SecretRef | None


@dataclass(frozen=True)
class BucketSourceSpec:
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint: str | None = None  # http(s):// of an S3-compatible server; None means AWS
    secret_ref: SecretRef | None = None


@dataclass(frozen=True)
class ValuesFrom:
    kind: str  # ConfigMap | Secret
    name: str
    optional: bool = False


@dataclass(frozen=True)
class Dependency:
    name: str
    namespace: str


@dataclass(frozen=True)
class EksTarget:
    """A remote EKS cluster to sync into, reached with the controller's own AWS identity.

    Hashable on purpose: the controller keeps one connection (pool, RestMapper, token) per target.
    """

    cluster: str
    region: str

    def __str__(self) -> str:
        """How log lines and messages name the target."""
        return f"EKS cluster {self.cluster} ({self.region})"

    def allowed_by(self, patterns: Iterable[str]) -> bool:
        """Whether a ``CLUSTER/REGION`` glob of ``run --allow-eks-target`` admits this target.

        Cluster and region are matched each against its own half (``*`` alone is ``*/*``),
        so ``prod*`` cannot match across the slash into a region.  Case-sensitive, as EKS
        cluster names are.
        """
        for pattern in patterns:
            cluster, _, region = ("*/*" if pattern == "*" else pattern).partition("/")
            if fnmatch.fnmatchcase(self.cluster, cluster) and fnmatch.fnmatchcase(self.region, region):
                return True
        return False


class TargetNotAllowedError(SpecError):
    """``spec.target`` names a cluster the controller's allow-list does not admit.

    A SpecError because only a spec change (or a restart with another allow-list) can
    cure it: the GitSync is Stalled, not retried.
    """


def allow_pattern(text: str) -> str:
    """Check one ``--allow-eks-target`` value: ``*``, or ``CLUSTER/REGION`` with globs in either half."""
    cluster, slash, region = text.partition("/")
    if text != "*" and (not slash or not cluster or not region or "/" in region):
        raise SpecError(f"{text!r} is not CLUSTER/REGION (globs allowed, e.g. prod/eu-west-1, */eu-west-1 or *)")
    return text


_EKS_CLUSTER = re.compile(r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}")  # EKS's own CreateCluster constraint
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")


def _target(spec: Mapping[str, Any]) -> EksTarget | None:
    """``spec.target.eks: {cluster, region}``; absent means the cluster the GitSync lives in."""
    target = spec.get("target")
    if target is None:
        return None
    if not isinstance(target, dict) or not isinstance(target.get("eks"), dict):
        raise SpecError("spec.target.eks: required when spec.target is set (an object with cluster and region)")
    eks = target["eks"]
    cluster = _str(eks, "cluster", "spec.target.eks") or ""
    region = _str(eks, "region", "spec.target.eks") or ""
    if not _EKS_CLUSTER.fullmatch(cluster):
        raise SpecError(f"spec.target.eks.cluster: {cluster!r} is not an EKS cluster name")
    if not _REGION.fullmatch(region):
        raise SpecError(f"spec.target.eks.region: {region!r} is not an AWS region like eu-west-1")
    return EksTarget(cluster, region)


@dataclass(frozen=True)
class GitSyncSpec:
    git: GitSourceSpec | None
    bucket: BucketSourceSpec | None = None
    path: str = "."
    interval: float = 300.0
    retry_interval: float = 60.0
    timeout: float = 300.0
    prune: bool = True
    wait: bool = False
    depends_on: tuple[Dependency, ...] = ()
    target_namespace: str | None = None
    service_account_name: str | None = None
    substitute: Mapping[str, str] = field(default_factory=dict)
    substitute_from: tuple[ValuesFrom, ...] = ()
    substitution: bool = False  # substitute or substituteFrom is set (even empty): Flux's "postBuild present"
    patches: tuple[Patch, ...] = ()
    policy_mode: PolicyMode = PolicyMode.ENFORCE
    drift_mode: DriftMode = DriftMode.CORRECT
    suspend: bool = False
    target: EksTarget | None = None  # None: the cluster the GitSync lives in
    helm: HelmSpec | None = None  # default None: render spec.path; set: render this chart instead
    decryption: DecryptionSpec | None = None  # default None: encrypted files are not decrypted

    @property
    def source(self) -> GitSourceSpec | BucketSourceSpec:
        """The one source parse() guarantees; its repr keys the cached source object."""
        src = self.git or self.bucket
        assert src is not None, "parse() guarantees exactly one source"
        return src


def _at_least(seconds: float, minimum: float, field_name: str) -> float:
    """A zero interval would reconcile in a hot loop against the git server and the API server."""
    if seconds < minimum:
        raise SpecError(f"spec.{field_name}: must be at least {minimum:g}s")
    return seconds


def check_timeout(spec: GitSyncSpec, *, maximum: float) -> None:
    """Refuse a ``timeout`` above the controller's ceiling (``reconciler run --max-timeout``).

    A worker waits up to ``timeout`` for health, so an unbounded one lets a tenant hold workers
    for days; refusing (Stalled, naming the field) says so, where clamping would hide it.
    """
    if spec.timeout > maximum:
        raise SpecError(
            f"spec.timeout: {spec.timeout:.15g}s is over this controller's maximum of {maximum:.15g}s "
            "(reconciler run --max-timeout)"
        )


def _str(spec: Mapping[str, Any], key: str, where: str) -> str | None:
    """A string field, or None when it is absent (callers supply their default with ``or``)."""
    v = spec.get(key)
    if v is not None and not isinstance(v, str):
        raise SpecError(f"{where}.{key}: expected a string, got {type(v).__name__}")
    return v


def _bool(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    v = spec.get(key, default)
    if not isinstance(v, bool):
        raise SpecError(f"spec.{key}: expected true or false, got {v!r}")
    return v


def _mode(spec: Mapping[str, Any], key: str, *, default: _Mode) -> _Mode:
    """``spec.<key>.mode`` as its enum; an unknown value names the field and the allowed values."""
    v = (spec.get(key) or {}).get("mode", default)
    allowed = type(default)
    if v not in tuple(allowed):
        raise SpecError(f"spec.{key}.mode: {v!r} is not one of {', '.join(allowed)}")
    return allowed(v)


def parse(obj: Mapping[str, Any]) -> GitSyncSpec:
    """Read a GitSync object's spec; raises :class:`SpecError` naming the bad field."""
    spec = obj.get("spec") or {}
    namespace = str((obj.get("metadata") or {}).get("namespace") or "default")
    source = spec.get("source") or {}
    if "git" in source and "bucket" in source:
        raise SpecError("spec.source: set exactly one of git or bucket, not both")
    # Read in this order so that a spec with several bad fields names the same one first as before.
    substitute, substitute_from, patches = _substitute(spec), _substitute_from(spec), _patches(spec)
    depends_on = _depends_on(spec, namespace)
    target_namespace = _optional_name(spec, "targetNamespace", namespace_name)
    service_account = _optional_name(spec, "serviceAccountName", object_name)
    return GitSyncSpec(
        git=None if "bucket" in source else _git(source.get("git")),
        bucket=_bucket(source["bucket"]) if "bucket" in source else None,
        path=_path(_str(spec, "path", "spec") or "."),
        interval=_duration(spec, "interval", default="5m"),
        retry_interval=_duration(spec, "retryInterval", default="1m"),
        timeout=_duration(spec, "timeout", default="5m"),
        prune=_bool(spec, "prune", True),
        wait=_bool(spec, "wait", False),
        depends_on=depends_on,
        target_namespace=target_namespace,
        service_account_name=service_account,
        substitute=substitute,
        substitute_from=substitute_from,
        substitution=spec.get("substitute") is not None or spec.get("substituteFrom") is not None,
        patches=patches,
        policy_mode=_mode(spec, "policy", default=PolicyMode.ENFORCE),
        drift_mode=_mode(spec, "drift", default=DriftMode.CORRECT),
        suspend=_bool(spec, "suspend", False),
        target=_target(spec),
        helm=_helm(spec, obj),
        decryption=_decryption(spec.get("decryption"), helm=spec.get("helm") is not None),
    )


def _helm(spec: Mapping[str, Any], obj: Mapping[str, Any]) -> HelmSpec | None:
    """``spec.helm``, read by :mod:`reconciler.gitsync.helmspec` (imported here: it builds on this module)."""
    if spec.get("helm") is None:
        return None
    from reconciler.gitsync.helmspec import parse_helm

    return parse_helm(spec["helm"], gitsync_name=str((obj.get("metadata") or {}).get("name") or ""))


def _duration(spec: Mapping[str, Any], key: str, *, default: str) -> float:
    """``spec.<key>`` as seconds, at least one (see :func:`_at_least`)."""
    return _at_least(parse_duration(_str(spec, key, "spec") or default, key), 1, key)


def _optional_name(spec: Mapping[str, Any], key: str, check: Callable[[Any, str], str]) -> str | None:
    """``spec.<key>``, a name checked by ``check`` (RFC 1123 label or subdomain); None when unset or empty."""
    value = _str(spec, key, "spec") or None
    return check(value, f"spec.{key}") if value is not None else None


def _substitute(spec: Mapping[str, Any]) -> dict[str, str]:
    substitute = spec.get("substitute") or {}
    if not isinstance(substitute, dict) or not all(isinstance(v, str) for v in substitute.values()):
        raise SpecError("spec.substitute: expected a map of strings")
    return dict(substitute)


def _substitute_from(spec: Mapping[str, Any]) -> tuple[ValuesFrom, ...]:
    values_from = []
    for i, vf in enumerate(spec.get("substituteFrom") or []):
        if not isinstance(vf, dict) or vf.get("kind") not in ("ConfigMap", "Secret") or not vf.get("name"):
            raise SpecError(f"spec.substituteFrom[{i}]: needs kind ConfigMap or Secret, and a name")
        name = object_name(vf["name"], f"spec.substituteFrom[{i}].name")
        values_from.append(ValuesFrom(vf["kind"], name, bool(vf.get("optional", False))))
    return tuple(values_from)


def _patches(spec: Mapping[str, Any]) -> tuple[Patch, ...]:
    patches = []
    for i, p in enumerate(spec.get("patches") or []):
        if not isinstance(p, dict):
            raise SpecError(f"spec.patches[{i}]: expected an object with fields patch and target")
        try:
            patches.append(Patch.from_spec(p))
        except ValueError as e:
            raise SpecError(f"spec.patches[{i}].{e}") from e  # every message starts with its field
    return tuple(patches)


def _depends_on(spec: Mapping[str, Any], namespace: str) -> tuple[Dependency, ...]:
    """``spec.dependsOn``; a dependency without a namespace is in the GitSync's own."""
    return tuple(
        Dependency(
            object_name(d["name"], f"spec.dependsOn[{i}].name"),
            namespace_name(d.get("namespace") or namespace, f"spec.dependsOn[{i}].namespace"),
        )
        for i, d in enumerate(spec.get("dependsOn") or [])
        if isinstance(d, dict) and d.get("name")
    )


def _path(path: str) -> str:
    """``spec.path`` stays inside the revision: refused here when it is absolute or climbs with ``..``
    (before anything is fetched or read); a symlink out of it is refused when the revision is read."""
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise SpecError(f"spec.path: {path!r} must be a relative path inside the source (like ./apps/prod)")
    if ".." in path.split("/"):
        raise SpecError(f"spec.path: {path!r} must not contain '..' (it must stay inside the source)")
    return path


def _secret_ref(src: Mapping[str, Any], where: str) -> SecretRef | None:
    secret = src.get("secretRef")
    if secret is None:
        return None
    if not isinstance(secret, dict) or not secret.get("name"):
        raise SpecError(f"{where}.secretRef.name: required when secretRef is set")
    return SecretRef(object_name(secret["name"], f"{where}.secretRef.name"))


def _decryption(decryption: Any, *, helm: bool) -> DecryptionSpec | None:
    """``spec.decryption: {provider: sops, secretRef: {name}}``, as in Flux.

    The Secret is always the GitSync's own namespace's: a ``secretRef.namespace`` is refused
    rather than ignored, so a tenant who writes one learns that it cannot borrow another
    namespace's keys (the CRD's schema prunes the field; a CRD without it would pass it here).
    """
    where = "spec.decryption"
    if decryption is None:
        return None
    if not isinstance(decryption, dict):
        raise SpecError(f"{where}: expected an object with provider and secretRef")
    if helm:
        raise SpecError(f"{where}: not supported with spec.helm (a chart's values files are not decrypted)")
    unknown = sorted(set(decryption) - {"provider", "secretRef"})
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field (expected provider and secretRef)")
    provider = decryption.get("provider")
    if provider is None:
        raise SpecError(f"{where}.provider: required (sops)")
    if provider not in tuple(DecryptionProvider):
        raise SpecError(f"{where}.provider: {provider!r} is not supported (only {', '.join(DecryptionProvider)})")
    ref = decryption.get("secretRef")
    if isinstance(ref, dict) and "namespace" in ref:
        raise SpecError(f"{where}.secretRef.namespace: not allowed; the Secret is read in the GitSync's own namespace")
    return DecryptionSpec(provider=DecryptionProvider(provider), secret_ref=_secret_ref(decryption, where))


def _git(git: Any) -> GitSourceSpec:
    if not isinstance(git, dict) or not git.get("url"):
        raise SpecError("spec.source.git.url: required")
    try:
        ref = GitRef.from_spec(git.get("ref") or {})
    except ValueError as e:
        raise SpecError(f"spec.source.git.ref: {e}") from e
    return GitSourceSpec(url=str(git["url"]), ref=ref, secret_ref=_secret_ref(git, "spec.source.git"))


def _bucket(bucket: Any) -> BucketSourceSpec:
    where = "spec.source.bucket"
    if not isinstance(bucket, dict):
        raise SpecError(f"{where}: expected an object with bucket, prefix, region, endpoint, secretRef")
    name = _str(bucket, "bucket", where)
    if not name or len(name) < 3:
        raise SpecError(f"{where}.bucket: required, a bucket name of at least 3 characters")
    endpoint = _str(bucket, "endpoint", where) or None
    if endpoint is not None and not re.match(r"https?://\S+$", endpoint):
        raise SpecError(f"{where}.endpoint: {endpoint!r} is not an http:// or https:// URL")
    return BucketSourceSpec(
        bucket=name,
        prefix=_str(bucket, "prefix", where) or "",
        region=_str(bucket, "region", where) or None,
        endpoint=endpoint,
        secret_ref=_secret_ref(bucket, where),
    )
