"""Object identity, Flux inventory ids, apply stages and ownership marks (pure data, no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.sync.objects import (
    OWNER_LABEL,
    PRUNE_ANNOTATION,
    ObjectId,
    annotation,
    is_owned_by,
    owner_label_value,
    stage_of,
)
from reconciler.sync.objects import (
    ApplyStage as Stage,
)


def obj(api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if namespace is not None:
        md["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": md}


# --- ObjectId.of -------------------------------------------------------------------------


def test_of_named_group_drops_the_version() -> None:
    oid = ObjectId.of(obj("apps/v1", "Deployment", "web", "shop"))
    assert oid == ObjectId(group="apps", kind="Deployment", namespace="shop", name="web")


def test_of_core_group_is_empty() -> None:
    oid = ObjectId.of(obj("v1", "ConfigMap", "settings", "shop"))
    assert oid.group == ""
    assert oid == ObjectId("", "ConfigMap", "shop", "settings")


def test_of_dotted_group() -> None:
    oid = ObjectId.of(obj("rbac.authorization.k8s.io/v1", "ClusterRole", "system:my_role"))
    assert oid == ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "system:my_role")


def test_of_is_version_independent() -> None:
    old = ObjectId.of(obj("autoscaling/v1", "HorizontalPodAutoscaler", "web", "shop"))
    new = ObjectId.of(obj("autoscaling/v2", "HorizontalPodAutoscaler", "web", "shop"))
    assert old == new
    assert hash(old) == hash(new)


def test_of_different_groups_are_different_objects() -> None:
    a = ObjectId.of(obj("extensions/v1beta1", "Ingress", "web", "shop"))
    b = ObjectId.of(obj("networking.k8s.io/v1", "Ingress", "web", "shop"))
    assert a != b


@pytest.mark.parametrize(
    "metadata",
    [
        {"name": "ns-less"},
        {"name": "ns-less", "namespace": None},
        {"name": "ns-less", "namespace": ""},
    ],
)
def test_of_missing_namespace_is_empty_string(metadata: dict[str, Any]) -> None:
    oid = ObjectId.of({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
    assert oid.namespace == ""
    assert oid.name == "ns-less"


@pytest.mark.parametrize("o", [{}, {"metadata": None}, {"apiVersion": "v1", "kind": "ConfigMap"}])
def test_of_tolerates_missing_fields(o: dict[str, Any]) -> None:
    oid = ObjectId.of(o)
    assert oid.group == ""
    assert oid.namespace == ""
    assert oid.name == ""


def test_of_does_not_mutate_the_object() -> None:
    o = obj("apps/v1", "Deployment", "web")
    ObjectId.of(o)
    assert o == obj("apps/v1", "Deployment", "web")


# --- inventory_id / parse ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "expected"),
    [
        (ObjectId("apps", "Deployment", "shop", "web"), "shop_web_apps_Deployment"),
        (ObjectId("", "Service", "shop", "web"), "shop_web__Service"),
        (ObjectId("", "Namespace", "", "shop"), "_shop__Namespace"),
        (
            ObjectId("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"),
            "_widgets.example.com_apiextensions.k8s.io_CustomResourceDefinition",
        ),
        (
            ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "system:my_role"),
            "_system:my_role_rbac.authorization.k8s.io_ClusterRole",
        ),
    ],
)
def test_inventory_id_is_flux_format(oid: ObjectId, expected: str) -> None:
    assert oid.inventory_id == expected


ROUND_TRIP = [
    ObjectId("apps", "Deployment", "shop", "web"),
    ObjectId("", "ConfigMap", "shop", "settings"),
    ObjectId("", "Namespace", "", "shop"),
    ObjectId("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"),
    ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "system:my_role"),
    ObjectId("rbac.authorization.k8s.io", "RoleBinding", "shop", "system:my_role_binding"),
    ObjectId("rbac.authorization.k8s.io", "Role", "shop", "a_b_c_d_e"),
    ObjectId("", "ServiceAccount", "shop", "_leading"),
    ObjectId("", "ServiceAccount", "shop", "trailing_"),
    ObjectId("", "ServiceAccount", "", "double__underscore"),
    ObjectId("example.com", "Widget", "shop", "w_1"),
]


@pytest.mark.parametrize("oid", ROUND_TRIP, ids=str)
def test_parse_round_trips(oid: ObjectId) -> None:
    parsed = ObjectId.parse(oid.inventory_id)
    assert parsed == oid
    assert parsed.inventory_id == oid.inventory_id


def test_parse_name_with_underscores_keeps_them_in_the_name() -> None:
    oid = ObjectId.parse("shop_system:my_role_rbac.authorization.k8s.io_Role")
    assert oid.namespace == "shop"
    assert oid.name == "system:my_role"
    assert oid.group == "rbac.authorization.k8s.io"
    assert oid.kind == "Role"


def test_parse_core_cluster_scoped() -> None:
    assert ObjectId.parse("_shop__Namespace") == ObjectId("", "Namespace", "", "shop")


def test_parse_round_trips_through_of() -> None:
    o = obj("rbac.authorization.k8s.io/v1", "RoleBinding", "system:my_role", "kube-system")
    oid = ObjectId.of(o)
    assert ObjectId.parse(oid.inventory_id) == oid


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "_",
        "__",
        "___",
        "no-separators-at-all",
        "shop_web",  # namespace and name only
        "shop_web_Deployment",  # group missing entirely (not even empty)
        "shop__apps_Deployment",  # empty name
        "shop_web_apps_",  # empty kind
        "__apps_Deployment",  # cluster-scoped, empty name
        "_web__",  # empty kind, core group
    ],
)
def test_parse_rejects_malformed_ids(bad: str) -> None:
    with pytest.raises(ValueError, match="malformed inventory id"):
        ObjectId.parse(bad)


def test_parse_error_quotes_the_id() -> None:
    with pytest.raises(ValueError, match=r"'shop_web'"):
        ObjectId.parse("shop_web")


# --- str / ordering ----------------------------------------------------------------------


def test_str_namespaced() -> None:
    assert str(ObjectId("apps", "Deployment", "shop", "web")) == "Deployment/shop/web"


def test_str_cluster_scoped() -> None:
    assert str(ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "system:my_role")) == (
        "ClusterRole/system:my_role"
    )


def test_str_core_namespace() -> None:
    assert str(ObjectId("", "Namespace", "", "shop")) == "Namespace/shop"


def test_ids_are_hashable_and_sortable() -> None:
    ids = [
        ObjectId("apps", "Deployment", "shop", "b"),
        ObjectId("", "ConfigMap", "shop", "a"),
        ObjectId("apps", "Deployment", "shop", "a"),
    ]
    assert sorted(ids) == [
        ObjectId("", "ConfigMap", "shop", "a"),
        ObjectId("apps", "Deployment", "shop", "a"),
        ObjectId("apps", "Deployment", "shop", "b"),
    ]
    assert len({*ids, ObjectId("apps", "Deployment", "shop", "b")}) == 3


def test_ids_are_frozen() -> None:
    oid = ObjectId("", "ConfigMap", "shop", "a")
    with pytest.raises(AttributeError):
        oid.name = "b"  # type: ignore[misc]


# --- stage_of ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "stage"),
    [
        (ObjectId("apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"), Stage.CRDS),
        (ObjectId("", "Namespace", "", "shop"), Stage.NAMESPACES),
        (ObjectId("rbac.authorization.k8s.io", "ClusterRole", "", "reader"), Stage.CLUSTER),
        (ObjectId("", "PersistentVolume", "", "pv-1"), Stage.CLUSTER),
        (ObjectId("example.com", "ClusterWidget", "", "w"), Stage.CLUSTER),
        (ObjectId("apps", "Deployment", "shop", "web"), Stage.NAMESPACED),
        (ObjectId("", "ConfigMap", "shop", "settings"), Stage.NAMESPACED),
        (ObjectId("example.com", "Widget", "shop", "w"), Stage.NAMESPACED),
    ],
    ids=str,
)
def test_stage_of(oid: ObjectId, stage: Stage) -> None:
    assert stage_of(oid) is stage


def test_namespace_kind_in_another_group_is_not_the_namespaces_stage() -> None:
    cluster_scoped = ObjectId("example.com", "Namespace", "", "tenant-a")
    namespaced = ObjectId("example.com", "Namespace", "shop", "tenant-a")
    assert stage_of(cluster_scoped) is Stage.CLUSTER
    assert stage_of(namespaced) is Stage.NAMESPACED


def test_crd_kind_in_another_group_is_not_the_crds_stage() -> None:
    assert stage_of(ObjectId("example.com", "CustomResourceDefinition", "", "x")) is Stage.CLUSTER
    assert stage_of(ObjectId("example.com", "CustomResourceDefinition", "shop", "x")) is Stage.NAMESPACED


def test_stage_of_uses_of_grouping() -> None:
    crd = ObjectId.of(obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"))
    ns = ObjectId.of(obj("v1", "Namespace", "shop"))
    assert stage_of(crd) is Stage.CRDS
    assert stage_of(ns) is Stage.NAMESPACES


def test_stages_apply_in_order_and_prune_in_reverse() -> None:
    assert list(Stage) == [Stage.CRDS, Stage.NAMESPACES, Stage.CLUSTER, Stage.NAMESPACED]
    assert Stage.CRDS < Stage.NAMESPACES < Stage.CLUSTER < Stage.NAMESPACED
    assert list(reversed(Stage)) == [Stage.NAMESPACED, Stage.CLUSTER, Stage.NAMESPACES, Stage.CRDS]


# --- ownership marks ---------------------------------------------------------------------


def test_annotation_reads_string_values() -> None:
    o = obj("v1", "ConfigMap", "a", "shop")
    o["metadata"]["annotations"] = {PRUNE_ANNOTATION: "disabled", "n": 3}
    assert annotation(o, PRUNE_ANNOTATION) == "disabled"
    assert annotation(o, "n") == "3"
    assert annotation(o, "missing") is None


@pytest.mark.parametrize(
    "o",
    [None, {}, {"metadata": None}, {"metadata": {"annotations": None}}, {"metadata": {"name": "a"}}],
)
def test_annotation_absent(o: dict[str, Any] | None) -> None:
    assert annotation(o, PRUNE_ANNOTATION) is None


def test_owner_label() -> None:
    owner = owner_label_value("flux-system", "apps")
    assert owner == "flux-system.apps"
    mine = obj("v1", "ConfigMap", "a", "shop")
    mine["metadata"]["labels"] = {OWNER_LABEL: owner}
    other = obj("v1", "ConfigMap", "b", "shop")
    other["metadata"]["labels"] = {OWNER_LABEL: owner_label_value("flux-system", "infra")}
    assert is_owned_by(mine, owner)
    assert not is_owned_by(other, owner)
    assert not is_owned_by(obj("v1", "ConfigMap", "c", "shop"), owner)
    assert not is_owned_by({"metadata": {"labels": None}}, owner)
