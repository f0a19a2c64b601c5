"""Which objects are cluster-scoped, offline, and setting the GitSync ``targetNamespace``.

Rendering cannot ask the API server (render never touches the network), so scope comes
from a built-in table of the cluster-scoped kinds of Kubernetes itself plus the
CustomResourceDefinitions in the same render (``spec.scope: Cluster``).  A kind known to
neither is treated as namespaced, which is what kustomize and Flux do; the apply step
later checks against discovery and ignores a namespace set on a cluster-scoped object.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from reconciler.render.manifests import Manifest
from reconciler.render.selectors import group_version

# (group, kind) of every built-in cluster-scoped kind of Kubernetes up to 1.35.
BUILTIN_CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset(
    [
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("storage.k8s.io", "VolumeAttributesClass"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "IPAddress"),
        ("networking.k8s.io", "ServiceCIDR"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
        ("node.k8s.io", "RuntimeClass"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("certificates.k8s.io", "ClusterTrustBundle"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("policy", "PodSecurityPolicy"),
        ("resource.k8s.io", "DeviceClass"),
        ("resource.k8s.io", "ResourceSlice"),
        ("internal.apiserver.k8s.io", "StorageVersion"),
        ("storagemigration.k8s.io", "StorageVersionMigration"),
        ("authentication.k8s.io", "TokenReview"),
        ("authentication.k8s.io", "SelfSubjectReview"),
        ("authorization.k8s.io", "SubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectAccessReview"),
        ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ]
)


def group_kind(obj: dict[str, Any]) -> tuple[str, str]:
    return group_version(str(obj.get("apiVersion", "")))[0], str(obj.get("kind", ""))


class CrdName(NamedTuple):
    """What a CustomResourceDefinition of the render declares about its kind."""

    group: str
    kind: str
    plural: Any  # spec.names.plural as written (callers check it is a non-empty string)
    scope: Any  # spec.scope as written: "Cluster" or "Namespaced"


def crd_names(objs: Iterable[dict[str, Any]]) -> Iterator[CrdName]:
    """The kinds the CRDs among ``objs`` define; a CRD without a string group and kind is skipped
    (the API server will refuse it with a better message than a render could)."""
    for obj in objs:
        if group_kind(obj) != ("apiextensions.k8s.io", "CustomResourceDefinition"):
            continue
        spec = s if isinstance(s := obj.get("spec"), dict) else {}
        names = n if isinstance(n := spec.get("names"), dict) else {}
        group, kind = spec.get("group"), names.get("kind")
        if isinstance(group, str) and isinstance(kind, str):
            yield CrdName(group, kind, names.get("plural"), spec.get("scope"))


class Scope:
    """Answers "is this object cluster-scoped?" for one render."""

    def __init__(self, objs: Iterable[dict[str, Any]]) -> None:
        self.cluster: set[tuple[str, str]] = set(BUILTIN_CLUSTER_SCOPED)
        self.namespaced: set[tuple[str, str]] = set()
        for crd in crd_names(objs):
            (self.cluster if crd.scope == "Cluster" else self.namespaced).add((crd.group, crd.kind))

    def cluster_scoped(self, obj: dict[str, Any]) -> bool:
        gk = group_kind(obj)
        return gk in self.cluster and gk not in self.namespaced


def set_namespace(manifests: Sequence[Manifest], namespace: str, scope: Scope) -> list[Manifest]:
    """Every namespaced object moved to ``namespace`` (new dicts; cluster-scoped ones untouched)."""
    out = []
    for m in manifests:
        if scope.cluster_scoped(m.obj) or m.obj["metadata"].get("namespace") == namespace:
            out.append(m)
            continue
        obj = {**m.obj, "metadata": {**m.obj["metadata"], "namespace": namespace}}
        out.append(replace(m, obj=obj))
    return out
