"""examples/fleet/gitsyncs: the bootstrap GitSyncs of each cluster are valid against our own
GitSync CRD (deploy/crd-gitsync.yaml), point at paths that exist, and layer crds -> addons ->
apps through dependsOn without a cycle."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleet"
CRD = ROOT / "deploy" / "crd-gitsync.yaml"
CLUSTERS = ("dev", "prod")


def schema_errors(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """The structural-schema checks the API server would make for these fields: types,
    enums, patterns, required fields and unknown fields (pruning would drop them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return []
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if kind in types and not isinstance(value, types[kind]):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not one of {schema['enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for k, v in value.items():
                if k not in props:
                    if not schema.get("x-kubernetes-preserve-unknown-fields"):
                        errors.append(f"{where}.{k}: unknown field")
                    continue
                errors += schema_errors(v, props[k], f"{where}.{k}")
        elif isinstance(schema.get("additionalProperties"), dict):
            for k, v in value.items():
                errors += schema_errors(v, schema["additionalProperties"], f"{where}.{k}")
        errors += [f"{where}.{r}: required" for r in schema.get("required", []) if r not in value]
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += schema_errors(v, schema["items"], f"{where}[{i}]")
    return errors


@pytest.fixture(scope="module")
def gitsync_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "GitSync"
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return dict(version["schema"]["openAPIV3Schema"])


def gitsyncs(cluster: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((FLEET / "gitsyncs" / cluster / "gitsyncs.yaml").read_text()) if d]


def test_the_validator_finds_what_the_api_server_would_refuse(gitsync_schema: dict[str, Any]) -> None:
    bad = {
        "apiVersion": "gitops.reconciler.dev/v1",
        "kind": "GitSync",
        "metadata": {"name": "x"},
        "spec": {"source": {"git": {"url": "not a url"}}, "interval": "1 minute", "drift": {"mode": "fix"}, "x": 1},
    }
    errors = schema_errors(bad, gitsync_schema)
    assert any(".spec.source.git.url" in e for e in errors)
    assert any(".spec.interval" in e for e in errors)
    assert any(".spec.drift.mode" in e for e in errors)
    assert any(".spec.x: unknown field" in e for e in errors)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_gitsyncs_are_valid_and_layered(cluster: str, gitsync_schema: dict[str, Any]) -> None:
    objs = gitsyncs(cluster)
    for o in objs:
        assert (o["apiVersion"], o["kind"]) == ("gitops.reconciler.dev/v1", "GitSync")
        assert schema_errors(o, gitsync_schema) == [], o["metadata"]["name"]
    by_name = {o["metadata"]["name"]: o for o in objs}
    assert list(by_name) == ["crds", "addons", "apps"]
    deps = {n: [d["name"] for d in o["spec"].get("dependsOn", [])] for n, o in by_name.items()}
    assert deps == {"crds": [], "addons": ["crds"], "apps": ["crds", "addons"]}
    for name, o in by_name.items():
        spec = o["spec"]
        path = FLEET.parent.parent / spec["path"]
        assert path == FLEET / "clusters" / cluster / name, spec["path"]
        assert (path / "kustomization.yaml").is_file()
        assert spec["wait"] is True
        assert spec["substituteFrom"] == [{"kind": "ConfigMap", "name": "cluster-vars"}]
        assert all(o["metadata"]["namespace"] == "reconciler-system" for o in objs)
    assert by_name["crds"]["spec"]["prune"] is False  # deleting a CRD deletes all its objects
    vars_cm = yaml.safe_load((FLEET / "gitsyncs" / cluster / "cluster-vars.yaml").read_text())
    assert vars_cm["metadata"] == {"name": "cluster-vars", "namespace": "reconciler-system"}
    assert set(vars_cm["data"]) == {"CLUSTER_NAME", "AWS_ACCOUNT_ID", "AWS_REGION", "DOMAIN", "KUBE_DNS_IP"}
    assert all(isinstance(v, str) for v in vars_cm["data"].values())  # ConfigMap data is strings only


def test_the_combined_overlay_is_exactly_the_three_layers() -> None:
    for cluster in CLUSTERS:
        k = yaml.safe_load((FLEET / "clusters" / cluster / "kustomization.yaml").read_text())
        assert k["resources"] == ["crds", "addons", "apps"]
