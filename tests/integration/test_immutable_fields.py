"""Every immutable-field refusal names the field and carries the API server's own message, for
each kind whose validation words it differently; ``gitops.reconciler.dev/force: enabled`` then
deletes and recreates the object. Through the real CLI against the real control plane."""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler import cli
from reconciler.kube import client

FORCE = {"gitops.reconciler.dev/force": "enabled"}
SECRET_OLD, SECRET_NEW = "old-immutable-s3cret", "new-immutable-s3cret"


@dataclass
class Case:
    """One kind: the object as first synced, the change the server refuses, and what must show."""

    make: Callable[[str, str], dict[str, Any]]  # (namespace, unique name) -> object
    change: Callable[[dict[str, Any]], None]
    field: str  # the field our error names
    server_says: str  # a phrase of the API server's own message
    check: Callable[[dict[str, Any]], bool]  # the live object carries the change
    also: str = ""  # more text the error must carry (the path git changes below a whole-block field)


def _sc(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "example.com/one",
        "parameters": {"type": "gp2"},
    }


def _deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "one"}},
            "template": {
                "metadata": {"labels": {"app": "one"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def _deployment_selector(o: dict[str, Any]) -> None:
    o["spec"]["selector"]["matchLabels"]["app"] = "two"
    o["spec"]["template"]["metadata"]["labels"]["app"] = "two"


def _rolebinding(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    }


def _secret(ns: str, name: str) -> dict[str, Any]:
    value = base64.b64encode(SECRET_OLD.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "immutable": True,
        "data": {"password": value},
    }


def _configmap(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "immutable": True,
        "data": {"mode": "one"},
    }


def _service(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": _free_ip(), "ports": [{"port": 80}]},
    }


def _free_ip() -> str:
    # In the control plane's 10.0.0.0/16 service range, away from the allocator's usual start.
    n = uuid.uuid4().int % 60000 + 1000
    return f"10.0.{n // 250}.{n % 250 + 2}"


def _service_ip(o: dict[str, Any]) -> None:
    o["spec"]["clusterIP"] = _free_ip()


def _job(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "suspend": False,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "args": ["one"]}],
                }
            },
        },
    }


def _pvc(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "storageClassName": "class-one",
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(o: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            o = o[p]
        o[last] = value

    return change


def _get(o: dict[str, Any], path: str) -> Any:
    for p in path.split("."):
        o = o[p]
    return o


CASES = {
    "storageclass-parameters": Case(
        _sc,
        _set("parameters", {"type": "gp3"}),
        "parameters",
        "updates to parameters are forbidden",
        lambda o: o["parameters"] == {"type": "gp3"},
    ),
    "storageclass-provisioner": Case(
        _sc,
        _set("provisioner", "example.com/two"),
        "provisioner",
        "updates to provisioner are forbidden",
        lambda o: o["provisioner"] == "example.com/two",
    ),
    "deployment-selector": Case(
        _deployment,
        _deployment_selector,
        "spec.selector",
        "field is immutable",
        lambda o: o["spec"]["selector"]["matchLabels"] == {"app": "two"},
    ),
    "rolebinding-roleref": Case(
        _rolebinding,
        _set("roleRef.name", "edit"),
        "roleRef",
        "cannot change roleRef",
        lambda o: o["roleRef"]["name"] == "edit",
    ),
    "secret-data": Case(
        _secret,
        _set("data", {"password": base64.b64encode(SECRET_NEW.encode()).decode()}),
        "data",
        "field is immutable when `immutable` is set",
        lambda o: base64.b64decode(o["data"]["password"]).decode() == SECRET_NEW,
    ),
    "configmap-data": Case(
        _configmap,
        _set("data", {"mode": "two"}),
        "data",
        "field is immutable when `immutable` is set",
        lambda o: o["data"] == {"mode": "two"},
    ),
    "service-clusterip": Case(
        _service,
        _service_ip,
        "spec.clusterIPs[0]",
        "may not change once set",
        lambda o: True,  # compared with the desired IP in the test
    ),
    "job-template": Case(
        _job,
        _set("spec.template.spec.containers", [{"name": "c", "image": "registry.k8s.io/pause:3.10", "args": ["two"]}]),
        "spec.template",
        "field is immutable",
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["args"] == ["two"],
    ),
    "pvc-storageclassname": Case(
        _pvc,
        _set("spec.storageClassName", "class-two"),
        "spec",
        "spec is immutable after creation",
        lambda o: o["spec"]["storageClassName"] == "class-two",
        also="(git changes spec.storageClassName)",
    ),
}


def _sync(git_repo: Any, cluster: Any, ns: str, cache: Path) -> Result:
    argv = [
        "sync",
        "--repo",
        git_repo.url,
        "--ref",
        "main",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--namespace",
        ns,
        "--name",
        "immutable",
        "--cache-dir",
        str(cache),
        "--timeout",
        "60s",
    ]
    return CliRunner().invoke(cli.cli, argv, catch_exceptions=False)


def _path(o: dict[str, Any]) -> str:
    kind, name, ns = o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")
    plural = {
        "StorageClass": "/apis/storage.k8s.io/v1/storageclasses",
        "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
        "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        "Secret": f"/api/v1/namespaces/{ns}/secrets",
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
        "Service": f"/api/v1/namespaces/{ns}/services",
        "Job": f"/apis/batch/v1/namespaces/{ns}/jobs",
        "PersistentVolumeClaim": f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
    }[kind]
    return f"{plural}/{name}"


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_immutable_refusal_names_the_field_and_quotes_the_server(
    case: str, git_repo: Any, cluster: Any, kube: client.Kube, namespace: str, tmp_path: Path
) -> None:
    c = CASES[case]
    ns, cache = namespace, tmp_path / "cache"
    first = c.make(ns, f"imm-{uuid.uuid4().hex[:8]}")
    path = _path(first)
    try:
        git_repo.commit({"obj.yaml": yaml.safe_dump(first)}, "first")
        r = _sync(git_repo, cluster, ns, cache)
        assert r.exit_code == 0, r.output
        uid = kube.get(path)["metadata"]["uid"]

        changed = copy.deepcopy(first)
        c.change(changed)
        git_repo.commit({"obj.yaml": yaml.safe_dump(changed)}, "change an immutable field")
        r = _sync(git_repo, cluster, ns, cache)
        print(r.output)  # shown by pytest -rA: the real messages quoted in docs/runbook.md
        assert r.exit_code == 2, r.output
        out = " ".join(r.output.split())
        assert f"field {c.field} is immutable and would change" in out or f", {c.field} is immutable" in out, out
        assert "The API server said: " in out, out
        assert c.server_says in out, out
        assert c.also in out, out
        assert "gitops.reconciler.dev/force: enabled" in out, out
        assert "(see message)" not in out
        assert SECRET_OLD not in out
        assert SECRET_NEW not in out
        assert kube.get(path)["metadata"]["uid"] == uid, "nothing written on a refused plan"

        forced = copy.deepcopy(changed)
        forced["metadata"]["annotations"] = FORCE
        git_repo.commit({"obj.yaml": yaml.safe_dump(forced)}, "force it")
        r = _sync(git_repo, cluster, ns, cache)
        assert r.exit_code == 0, r.output
        assert "recreated" in r.output, r.output
        live = kube.get(path)
        assert live["metadata"]["uid"] != uid
        assert c.check(live), live
        if case == "service-clusterip":
            assert live["spec"]["clusterIP"] == forced["spec"]["clusterIP"]
    finally:
        if first["kind"] == "StorageClass" and kube.get_or_none(path) is not None:
            kube.request("DELETE", path)
