"""The default policy set (top-level ``policies/``): each policy passes its passing fixture
and fails its failing one with the expected messages, and no other policy fires on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.policy.evaluation import evaluate
from reconciler.policy.loading import load_policies
from reconciler.policy.model import PolicySet, Violation
from reconciler.render.manifests import load_path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "policy" / "defaults"
POLICIES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())

# For each failing fixture: (action, object, a fragment of the message) of every violation expected.
EXPECTED: dict[str, set[tuple[str, str, str]]] = {
    "image-tags": {
        ("Deny", "Deployment/shop/web", "latest (docker.io/library/nginx:latest), untagged (registry.k8s.io/pause)")
    },
    "container-resources": {("Deny", "CronJob/shop/report", "without resource requests and limits: run, fetch")},
    "host-access": {
        ("Deny", "Deployment/shop/web", "privileged containers are not allowed: app"),
        ("Deny", "Deployment/shop/web", "hostNetwork is not allowed"),
        ("Deny", "Deployment/shop/web", "hostPID is not allowed"),
        ("Deny", "Deployment/shop/web", "hostPath volumes are not allowed: etc (/etc)"),
        ("Deny", "DaemonSet/kube-system/node-local-dns", "privileged containers are not allowed: node-cache"),
        ("Deny", "DaemonSet/shop/node-exporter", "hostPID is not allowed"),
    },
    "allowed-registries": {
        ("Deny", "Deployment/shop/web", "not allowed: evil.example.com/app:1.0, quay.io.evil.example.com/app:1.0"),
    },
    "workload-name-label": {("Deny", "StatefulSet/shop/db", "workloads need the label app.kubernetes.io/name")},
    "cluster-admin-service-accounts": {
        ("Deny", "ClusterRoleBinding/ci-admin", "not to shop/ci"),
        ("Deny", "RoleBinding/shop/ci-admin", "not to shop/deployer"),
    },
    "plain-secrets": {
        ("Warn", "Secret/shop/db", "Secret with values committed to git in clear (keys: password): encrypt it with")
    },
}


@pytest.fixture(scope="module")
def defaults() -> PolicySet:
    return load_policies(ROOT / "policies")


def test_every_default_policy_has_fixtures(defaults: PolicySet) -> None:
    assert {p.name for p in defaults.policies} == set(POLICIES) == set(EXPECTED)
    for name in POLICIES:
        assert (FIXTURES / name / "pass.yaml").is_file()
        assert (FIXTURES / name / "fail.yaml").is_file()


@pytest.mark.parametrize("name", POLICIES)
def test_passing_fixture_has_no_violation(defaults: PolicySet, name: str) -> None:
    assert evaluate(load_path(FIXTURES / name / "pass.yaml"), defaults) == []


@pytest.mark.parametrize("name", POLICIES)
def test_failing_fixture_fails_only_that_policy(defaults: PolicySet, name: str) -> None:
    violations = evaluate(load_path(FIXTURES / name / "fail.yaml"), defaults)
    assert {v.policy for v in violations} == {name}, violations
    assert all(v.binding == name and v.file == "fail.yaml" for v in violations)
    assert len(violations) == len(EXPECTED[name]), violations
    for action, obj, fragment in EXPECTED[name]:
        assert any(_is(v, action, obj, fragment) for v in violations), (action, obj, fragment, violations)


def _is(v: Violation, action: str, obj: str, fragment: str) -> bool:
    return v.action == action and v.object == obj and fragment in v.message


def test_exceptions_are_keyed_by_namespace_and_name(defaults: PolicySet) -> None:
    """The node-agent exceptions live in the param, not in a disabled policy or a label anyone can set."""
    host = next(p for p in defaults.policies if p.name == "host-access")
    assert host.param_kind == ("v1", "ConfigMap")
    (binding,) = defaults.bindings["host-access"]
    assert binding.actions == ("Deny",)
    assert binding.param_ref is not None
    assert binding.param_ref.not_found == "Deny"
    param = next(o for o in defaults.params if o["metadata"]["name"] == "host-access-exceptions")
    assert set(param["data"]) == {
        "monitoring.node-exporter",
        "kube-system.node-problem-detector",
        "kube-system.node-local-dns",
    }
