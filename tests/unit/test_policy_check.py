"""``reconciler check`` (``reconciler.policy.checking.check``): output formats and exit codes."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reconciler.policy.checking import EXIT_DENIED, EXIT_ERROR, EXIT_OK, check

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
FIXTURES = ROOT / "tests" / "fixtures" / "policy"
ADDONS = ROOT / "manifests" / "addons"


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """Passing fixtures of the default set (those with distinct objects), in one folder."""
    out = tmp_path / "good"
    out.mkdir()
    for name in ("host-access", "cluster-admin-service-accounts", "plain-secrets", "container-resources"):
        shutil.copy(FIXTURES / "defaults" / name / "pass.yaml", out / f"{name}.yaml")
    return out


def test_passing_tree_exits_zero(good: Path) -> None:
    text, code = check(good, policies=POLICIES, output="table")
    assert code == EXIT_OK, text
    assert re.fullmatch(r"\d+ objects, 7 policies: 0 denied, 0 warned/audited - passed\n", text), text


def test_bad_fixture_fails_with_a_table_naming_policy_object_and_reason() -> None:
    text, code = check(FIXTURES / "defaults" / "host-access" / "fail.yaml", policies=POLICIES, output="table")
    assert code == EXIT_DENIED
    lines = text.splitlines()
    assert lines[0].split() == ["POLICY", "ACTION", "OBJECT", "MESSAGE"]
    assert re.match(r"host-access +Deny +Deployment/shop/web +hostNetwork is not allowed \(.*fail\.yaml\)$", lines[2])
    assert lines[-1] == "3 objects, 7 policies: 6 denied, 0 warned/audited"


def test_warnings_only_exit_zero() -> None:
    text, code = check(FIXTURES / "defaults" / "plain-secrets" / "fail.yaml", policies=POLICIES, output="json")
    assert code == EXIT_OK
    doc = json.loads(text)
    assert doc["denied"] == 0
    assert [(v["policy"], v["action"], v["object"]) for v in doc["violations"]] == [
        ("plain-secrets", "Warn", "Secret/shop/db")
    ]
    assert "hunter2" not in text


def test_junit_is_valid_xml_with_one_testcase_per_object_and_policy() -> None:
    text, code = check(FIXTURES / "defaults" / "cluster-admin-service-accounts", policies=POLICIES, output="junit")
    assert code == EXIT_DENIED
    root = ET.fromstring(text)  # noqa: S314 (our own output)
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 4 * 7  # 4 objects (pass and fail files) x 7 policies
    assert root.get("tests") == "28"
    failed = [(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None]
    assert failed == [
        ("ClusterRoleBinding/ci-admin", "cluster-admin-service-accounts"),
        ("RoleBinding/shop/ci-admin", "cluster-admin-service-accounts"),
    ]
    assert root.get("failures") == "2"


def test_secret_values_never_reach_the_report(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: leaky}
spec:
  matchConstraints:
    resourceRules: [{apiGroups: [""], apiVersions: ["v1"], resources: ["secrets"], operations: ["CREATE"]}]
  validations:
    - expression: "false"
      messageExpression: "'value ' + string(base64.decode(object.data.k)) + ' / ' + object.data.k"
"""
    )
    (tmp_path / "s.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: aHVudGVyMg==}\n")
    text, code = check(tmp_path / "s.yaml", policies=tmp_path / "p.yaml", output="table")
    # base64.decode is not in the Kubernetes CEL environment: a load error, exit 2
    assert code == EXIT_ERROR
    assert "p.yaml: ValidatingAdmissionPolicy leaky: expression" in text
    (tmp_path / "p.yaml").write_text(
        (tmp_path / "p.yaml").read_text().replace("string(base64.decode(object.data.k))", "'x'")
    )
    text, code = check(tmp_path / "s.yaml", policies=tmp_path / "p.yaml", output="table")
    assert code == EXIT_DENIED
    assert "aHVudGVyMg==" not in text
    assert "value x / ***" in text


def test_malformed_policy_is_an_error_naming_file_policy_and_expression(tmp_path: Path, good: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "policies")
    bad = tmp_path / "policies" / "image-tags.yaml"
    bad.write_text(bad.read_text().replace("variables.untagged.size() == 0", "variables.untagged.size() =="))
    for output in ("table", "json", "junit"):
        text, code = check(good, policies=tmp_path / "policies", output=output)
        assert code == EXIT_ERROR
        assert (
            "image-tags.yaml: ValidatingAdmissionPolicy image-tags: expression 'variables.untagged.size() =='" in text
        )
    root = ET.fromstring(check(good, policies=tmp_path / "policies", output="junit")[0])  # noqa: S314 (our own output)
    assert root.get("errors") == "1"


def test_bad_manifest_and_unknown_output_are_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    text, code = check(tmp_path, policies=POLICIES, output="table")
    assert code == EXIT_ERROR
    assert text.startswith("error: render: ")
    assert "bad.yaml" in text
    assert "metadata.name" in text
    assert check(tmp_path, policies=POLICIES, output="yaml") == (
        "error: unknown output 'yaml' (use table, json or junit)\n",
        EXIT_ERROR,
    )


ADDON_DIRS = sorted(p.name for p in ADDONS.iterdir() if (p / "kustomization.yaml").is_file()) if ADDONS.is_dir() else []


@pytest.mark.parametrize("addon", ADDON_DIRS)
def test_shipped_addons_pass_the_default_policies(addon: str) -> None:
    variables = set(
        re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", "".join(p.read_text() for p in (ADDONS / addon).rglob("*.yaml")))
    )
    text, code = check(ADDONS / addon, policies=POLICIES, output="table", substitute=dict.fromkeys(variables, "1"))
    assert code == EXIT_OK, text


def test_kustomized_tree_reports_every_policy_in_one_run() -> None:
    """The example of docs/policies.md: kustomize, a namespace transformer, five findings and a warning."""
    text, code = check(FIXTURES / "check" / "shop", policies=POLICIES, output="json")
    assert code == EXIT_DENIED
    doc = json.loads(text)
    found = {(v["policy"], v["action"], v["object"]) for v in doc["violations"]}
    assert found == {
        ("cluster-admin-service-accounts", "Deny", "ClusterRoleBinding/shop-ci-admin"),
        ("plain-secrets", "Warn", "Secret/shop/db"),
        ("allowed-registries", "Deny", "Deployment/shop/web"),
        ("container-resources", "Deny", "Deployment/shop/web"),
        ("image-tags", "Deny", "Deployment/shop/web"),
        ("workload-name-label", "Deny", "Deployment/shop/worker"),
    }
    assert "hunter2" not in text


def test_compile_errors_are_one_line(tmp_path: Path) -> None:
    shutil.copytree(POLICIES, tmp_path / "policies")
    bad = tmp_path / "policies" / "image-tags.yaml"
    bad.write_text(bad.read_text().replace("variables.untagged.size() == 0", "variables.untaged.size() == 0"))
    text, code = check(FIXTURES / "check" / "shop", policies=tmp_path / "policies", output="table")
    assert code == EXIT_ERROR
    assert text == (
        "error: policy: image-tags.yaml: ValidatingAdmissionPolicy image-tags: "
        "expression 'variables.untaged.size() == 0': "
        "spec.validations[0].expression: compilation failed: at 1:10: undeclared reference to 'variables.untaged'\n"
    )
