"""The tenancy model `reconciler run` enforces: who a GitSync acts as, and what it may name.

A GitSync is written by a tenant, who may create GitSyncs in their own namespace, and its
repository by the tenant's git authors. Neither may borrow the controller's identities: its
Kubernetes ServiceAccount, its AWS role, its disk. Everything here is checked before the
GitSync causes any request, and a refusal is a :class:`NotAllowedError` (a SpecError: the
GitSync is Stalled until its spec or the controller's flags change).

The default :class:`Tenancy` allows everything, as the CLI and single-tenant installs always
did; the lock-down flags of `reconciler run` (docs/security.md) narrow it.
"""

from __future__ import annotations

import fnmatch
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.gitsync.spec import (
    BucketSourceSpec,
    EksTarget,
    GitSourceSpec,
    GitSyncSpec,
    SpecError,
    TargetNotAllowedError,
    namespace_name,
    object_name,
)
from reconciler.policy import PolicyMode
from reconciler.report.redact import redact_url
from reconciler.source import urls

POLICY_MODES = (PolicyMode.OFF, PolicyMode.AUDIT, PolicyMode.ENFORCE)  # weakest first


class NotAllowedError(SpecError):
    """A GitSync names something the controller's tenancy flags do not allow for its namespace."""


@dataclass(frozen=True)
class Grant:
    """One ``NAMESPACE=VALUE`` allow-list entry; ``namespace`` is a glob, ``None`` means the
    old form without ``NAMESPACE=`` (see :func:`parse_grant`)."""

    namespace: str | None
    value: str

    def admits(self, namespace: str, platform: frozenset[str]) -> bool:
        if self.namespace is None:  # old form: platform namespaces, or all when none are listed
            return not platform or namespace in platform
        return fnmatch.fnmatchcase(namespace, self.namespace)


def parse_grant(text: str, flag: str, *, legacy: bool = False) -> Grant:
    """``NAMESPACE=VALUE`` (NAMESPACE a glob); with ``legacy`` also a bare VALUE (the old
    ``--allow-eks-target CLUSTER/REGION`` form). Raises SpecError naming the flag."""
    ns, eq, value = text.partition("=")
    if not eq:
        if legacy:
            return Grant(None, text)
        raise SpecError(f"{flag} {text!r}: expected NAMESPACE=VALUE (globs allowed in NAMESPACE)")
    if not ns or not value:
        raise SpecError(f"{flag} {text!r}: expected NAMESPACE=VALUE with both parts set")
    return Grant(ns, value)


def parse_service_account(text: str, flag: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of a ServiceAccount, each part an RFC 1123 name."""
    ns, slash, name = text.partition("/")
    if not slash:
        raise SpecError(f"{flag} {text!r}: expected NAMESPACE/NAME")
    return namespace_name(ns, flag), object_name(name, flag)


def service_account_user(namespace: str, name: str) -> str:
    """The user name the API server gives a ServiceAccount (what impersonation names)."""
    return f"system:serviceaccount:{namespace}:{name}"


def _eks_allowed(target: EksTarget, pattern: str) -> bool:
    return target.allowed_by([pattern])


@dataclass(frozen=True)
class Tenancy:
    """The operator's lock-down settings (all off by default: today's behaviour).

    Each field is one ``reconciler run`` flag; its default is the flag's.
    """

    default_service_account: str | None = None
    """--default-service-account NAME; default None: GitSyncs without serviceAccountName act as the controller."""
    platform_namespaces: frozenset[str] = frozenset()
    """--platform-namespace NS (repeatable); default: none."""
    platform_service_account: tuple[str, str] | None = None
    """--platform-service-account NS/NAME; default None: platform GitSyncs act as the controller."""
    no_cross_namespace_refs: bool = False
    """--no-cross-namespace-refs; default False: dependsOn may name another namespace."""
    min_policy_mode: PolicyMode = PolicyMode.OFF
    """--min-policy-mode; default off: a GitSync's spec.policy.mode is never raised."""
    eks_targets: tuple[Grant, ...] = ()
    """--allow-eks-target [NS=]CLUSTER/REGION (repeatable); default: no remote target is allowed."""
    buckets: tuple[Grant, ...] = ()
    """--allow-bucket NS=BUCKET-GLOB (repeatable); default: every bucket needs a secretRef."""
    bucket_endpoints: tuple[Grant, ...] = ()
    """--allow-bucket-endpoint NS=URL-PREFIX (repeatable); default: AWS's own endpoints only."""
    local_git: bool = True
    """file:// git URLs; default True (the CLI reads local repositories), `reconciler run` turns it off."""

    def is_platform(self, namespace: str) -> bool:
        return namespace in self.platform_namespaces

    def identity(self, namespace: str, spec: GitSyncSpec) -> str:
        """The user a GitSync of ``namespace`` acts as ("" = the controller's own identity).

        Its own ``serviceAccountName`` first; else the platform ServiceAccount in a platform
        namespace, the default ServiceAccount of its own namespace elsewhere. With neither flag
        set, "" as before the tenancy model: the controller applies with its own rights.
        """
        if spec.service_account_name:
            return service_account_user(namespace, spec.service_account_name)
        if self.is_platform(namespace):
            return service_account_user(*self.platform_service_account) if self.platform_service_account else ""
        if self.default_service_account:
            return service_account_user(namespace, self.default_service_account)
        return ""

    def policy_mode(self, mode: PolicyMode) -> PolicyMode:
        """``spec.policy.mode`` raised to the operator's floor (never lowered)."""
        return PolicyMode(max(mode, self.min_policy_mode, key=POLICY_MODES.index))

    def check_target(self, namespace: str, target: EksTarget) -> None:
        """Before any AWS call: a target is reached with the controller's own AWS identity."""
        if any(
            g.admits(namespace, self.platform_namespaces) and _eks_allowed(target, g.value) for g in self.eks_targets
        ):
            return
        allowed = ", ".join(g.value for g in self.eks_targets if g.admits(namespace, self.platform_namespaces))
        raise TargetNotAllowedError(
            f"spec.target.eks {target.cluster}/{target.region} is not allowed for namespace {namespace} by this "
            f"controller (reconciler run --allow-eks-target NAMESPACE=CLUSTER/REGION; allowed: {allowed or 'none'})"
        )

    def check(self, namespace: str, spec: GitSyncSpec) -> None:
        """Everything a GitSync names that its namespace may not use; raises NotAllowedError.

        Runs before the GitSync causes any request (API server, git, S3, AWS).
        """
        if self.no_cross_namespace_refs:
            for i, dep in enumerate(spec.depends_on):
                if dep.namespace != namespace:
                    raise NotAllowedError(
                        f"spec.dependsOn[{i}]: GitSync {dep.namespace}/{dep.name} is in another namespace, and this "
                        "controller refuses cross-namespace references (--no-cross-namespace-refs)"
                    )
        src = spec.source
        if isinstance(src, GitSourceSpec) and not self.local_git:
            try:
                transport = urls.parse(src.url).transport
            except ValueError:
                transport = "file" if src.url.startswith(("/", ".", "file:")) else "ssh"
            if transport == "file":
                raise NotAllowedError(
                    f"spec.source.git.url: {redact_url(src.url)!r}: file:// URLs read the controller's own disk and "
                    "are refused by `reconciler run` (use an ssh://, https:// or http:// git server)"
                )
        if isinstance(src, BucketSourceSpec):
            self._check_bucket(namespace, src)
        if spec.decryption is not None and spec.decryption.secret_ref is None:
            self._check_own_keys(namespace)

    def own_keys(self, namespace: str) -> bool:
        """Whether a GitSync of ``namespace`` may decrypt with the controller's own keys (its AWS
        role, ``SOPS_AGE_KEY``). With platform namespaces set, those keys are theirs alone, or a
        tenant could copy a platform file into its repository and have it decrypted into its
        own namespace; a tenant's key Secret without AWS credentials then gets no AWS identity."""
        return not self.platform_namespaces or self.is_platform(namespace)

    def _check_own_keys(self, namespace: str) -> None:
        """``spec.decryption`` without a secretRef: the controller's own keys (see :meth:`own_keys`)."""
        if not self.own_keys(namespace):
            raise NotAllowedError(
                f"spec.decryption.secretRef: required in namespace {namespace}: without it the controller's own "
                "keys would decrypt, and this controller keeps them for its platform namespaces (--platform-namespace)"
            )

    def _check_bucket(self, namespace: str, src: BucketSourceSpec) -> None:
        if src.endpoint is not None and not any(
            g.admits(namespace, self.platform_namespaces) and _prefix_of(src.endpoint, g.value)
            for g in self.bucket_endpoints
        ):
            raise NotAllowedError(
                f"spec.source.bucket.endpoint: {redact_url(src.endpoint)!r} is not allowed for namespace {namespace} "
                "by this controller (reconciler run --allow-bucket-endpoint NAMESPACE=URL-PREFIX; allowed: "
                f"{_listed(self.bucket_endpoints, namespace, self.platform_namespaces)})"
            )
        if src.secret_ref is None and not any(
            g.admits(namespace, self.platform_namespaces) and fnmatch.fnmatchcase(src.bucket, g.value)
            for g in self.buckets
        ):
            raise NotAllowedError(
                f"spec.source.bucket.bucket: {src.bucket!r} would be read with the controller's own AWS identity "
                f"(no secretRef), and is not allowed for namespace {namespace} (reconciler run --allow-bucket "
                f"NAMESPACE=BUCKET-GLOB; allowed: {_listed(self.buckets, namespace, self.platform_namespaces)})"
            )


def _prefix_of(url: str, prefix: str) -> bool:
    """``url`` starts with ``prefix`` at a boundary: ``http://s3.local`` admits ``http://s3.local:9000``
    and ``http://s3.local/x``, never ``http://s3.local.evil`` nor any URL with userinfo
    (``http://s3.local:x@169.254.169.254`` names another host)."""
    if "@" in urllib.parse.urlsplit(url).netloc or not url.startswith(prefix):
        return False
    rest = url[len(prefix) :]
    return not rest or prefix.endswith("/") or rest[0] in ":/?#"


def _listed(grants: Iterable[Grant], namespace: str, platform: frozenset[str]) -> str:
    mine = [g.value for g in grants if g.admits(namespace, platform)]
    return ", ".join(mine) or "none"
