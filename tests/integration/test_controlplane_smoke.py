"""Smoke tests: the local control plane is real (API server, controllers, RBAC) and our
kube layer talks to it correctly."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from reconciler.kube import client, discovery, ssa


def _cm(ns: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "smoke", "namespace": ns}, "data": data}


def test_server_side_apply_configmap_records_our_field_manager(
    kube: client.Kube, mapper: discovery.RestMapper, namespace: str
) -> None:
    live = ssa.apply(kube, _cm(namespace, {"a": "1"}), mapper=mapper).live
    managers = {(f["manager"], f["operation"]) for f in live["metadata"]["managedFields"]}
    assert managers == {("gitops-reconciler", "Apply")}
    owned = live["metadata"]["managedFields"][0]["fieldsV1"]
    assert "f:a" in owned["f:data"]

    # Re-applying the same content is a no-op for etcd: the resourceVersion does not move.
    again = ssa.apply(kube, _cm(namespace, {"a": "1"}), mapper=mapper).live
    assert again["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]

    # Dropping a key from the applied config removes it from the object (we owned it).
    changed = ssa.apply(kube, _cm(namespace, {"b": "2"}), mapper=mapper).live
    assert changed["data"] == {"b": "2"}


def test_server_side_apply_deployment_gets_a_replicaset(
    kube: client.Kube, mapper: discovery.RestMapper, namespace: str, eventually: Any
) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    live = ssa.apply(kube, dep, mapper=mapper).live
    uid = live["metadata"]["uid"]

    def owned_replicasets() -> list[dict[str, Any]]:
        items = kube.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
        return [r for r in items if any(o["uid"] == uid for o in r["metadata"].get("ownerReferences", []))]

    rs = eventually(owned_replicasets, 30, "the deployment controller to create a ReplicaSet")
    assert rs[0]["spec"]["replicas"] == 1


def test_namespace_deletion_completes(kube: client.Kube, mapper: discovery.RestMapper, eventually: Any) -> None:
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "smoke-delete"}})
    ssa.apply(kube, _cm("smoke-delete", {"x": "y"}), mapper=mapper)
    kube.request("DELETE", "/api/v1/namespaces/smoke-delete")
    assert kube.get("/api/v1/namespaces/smoke-delete")["status"]["phase"] == "Terminating"
    eventually(
        lambda: kube.get_or_none("/api/v1/namespaces/smoke-delete") is None,
        60,
        "the namespace controller to finish deleting smoke-delete",
    )


def test_rbac_is_enforced_for_a_service_account_token(cluster: Any, kube: client.Kube, namespace: str) -> None:
    kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": "reader"}})
    kube.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        body={
            "metadata": {"name": "cm-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    kube.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        body={
            "metadata": {"name": "cm-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    tr = kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/reader/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    token = tr["status"]["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == f"system:serviceaccount:{namespace}:reader"

    sa = client.connect_token(cluster.server, token, ca_file=str(cluster.root / "pki" / "ca.crt"))
    try:
        assert sa.get(f"/api/v1/namespaces/{namespace}/configmaps")["kind"] == "ConfigMapList"
        with pytest.raises(client.KubeError) as denied_write:
            sa.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body=_cm(namespace, {}))
        assert denied_write.value.status == 403
        assert denied_write.value.reason == "Forbidden"
        assert f"system:serviceaccount:{namespace}:reader" in denied_write.value.message
        with pytest.raises(client.KubeError) as denied_secrets:
            sa.get(f"/api/v1/namespaces/{namespace}/secrets")
        assert denied_secrets.value.status == 403
        with pytest.raises(client.KubeError) as other_ns:
            sa.get("/api/v1/namespaces/default/configmaps")
        assert other_ns.value.status == 403
    finally:
        sa.close()


def test_unreachable_api_server_is_a_clear_error(cluster: Any) -> None:
    dead = client.connect_token("https://127.0.0.1:9", "x", ca_file=str(cluster.root / "pki" / "ca.crt"))
    with pytest.raises(client.UnreachableError, match=r"127\.0\.0\.1:9"):
        dead.request("GET", "/version", timeout=(2, 2))


def test_discovery_survives_a_broken_aggregated_api(kube: client.Kube, eventually: Any) -> None:
    svc_path = "/apis/apiregistration.k8s.io/v1/apiservices"
    kube.request(
        "POST",
        svc_path,
        body={
            "metadata": {"name": "v1beta1.broken.example.com"},
            "spec": {
                "group": "broken.example.com",
                "version": "v1beta1",
                "service": {"name": "nowhere", "namespace": "default", "port": 443},
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "insecureSkipTLSVerify": True,
            },
        },
    )
    try:
        mapper = discovery.RestMapper(kube)

        def mapped_with_failure() -> bool:
            mapper.refresh()
            return "broken.example.com/v1beta1" in mapper.failed

        eventually(mapped_with_failure, 30, "discovery to report the broken APIService")
        assert mapper.find("apps/v1", "Deployment").plural == "deployments"
        assert mapper.find("v1", "ConfigMap").namespaced
        with pytest.raises(discovery.UnknownKindError, match=r"broken\.example\.com"):
            mapper.find("broken.example.com/v1beta1", "Widget")
    finally:
        kube.request("DELETE", f"{svc_path}/v1beta1.broken.example.com")


def test_kwok_node_makes_a_deployment_available(
    request: pytest.FixtureRequest, kube: client.Kube, mapper: discovery.RestMapper, namespace: str, eventually: Any
) -> None:
    if request.config.getoption("--no-kwok"):
        pytest.skip("run with --no-kwok: there is no Node for Pods to run on")
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "avail", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "avail"}},
            "template": {
                "metadata": {"labels": {"app": "avail"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    ssa.apply(kube, dep, mapper=mapper)

    def available() -> bool:
        st = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/avail").get("status", {})
        return st.get("availableReplicas") == 2 and any(
            c["type"] == "Available" and c["status"] == "True" for c in st.get("conditions", [])
        )

    eventually(available, 60, "Deployment avail to become Available on the kwok node")
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-node-0"}
    assert all(p["status"]["phase"] == "Running" for p in pods)
