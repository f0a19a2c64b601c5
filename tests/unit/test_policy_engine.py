"""The policy loader fails closed, naming file, policy and expression; engine details that the
differential test cannot reach (offline-only behaviour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.policy.evaluation import evaluate
from reconciler.policy.loading import load_policies
from reconciler.policy.model import PolicyError
from reconciler.render.manifests import Manifest


def vap(name: str = "p", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "matchConstraints": {
            "resourceRules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["*"]}
            ]
        },
        "validations": [{"expression": "object.metadata.name != 'bad'", "message": "bad name"}],
    }
    base.update(spec)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": base,
    }


def vapb(name: str = "b", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"policyName": "p", "validationActions": ["Deny"], **spec}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": base,
    }


def write(tmp_path: Path, *objs: dict[str, Any]) -> Path:
    (tmp_path / "policies.yaml").write_text(yaml.safe_dump_all(objs))
    return tmp_path


def cm(name: str, ns: str | None = "app", **data: str) -> Manifest:
    md: dict[str, Any] = {"name": name}
    if ns:
        md["namespace"] = ns
    return Manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data}, "app.yaml", 1)


@pytest.mark.parametrize(
    ("objs", "fragments"),
    [
        (
            [vap(validations=[{"expression": "object.metadata.name ==", "message": "x"}])],
            ["spec.validations[0].expression", "compilation failed", "'object.metadata.name =='"],
        ),
        (
            [vap(validations=[{"expression": "object.metadata.name", "message": "x"}])],
            ["must evaluate to bool but got dyn"],
        ),
        ([vap(validations=[{"expression": "object.nosuchfn()"}])], ["undeclared reference to 'nosuchfn'"]),
        ([vap(validations=[{"expression": "params.x == 1"}])], ["undeclared reference to 'params.x'"]),
        (
            [vap(validations=[{"expression": "authorizer.group('').resource('pods').check('get').allowed()"}])],
            ["authorizer is not supported"],
        ),
        ([vap(validations=[{"expression": "variables.nope"}])], ["undeclared reference"]),
        ([vap(validatons=[])], ["spec.validatons: unknown field"]),
        (
            [vap(validations=[{"expression": "object.metadata.name.matches('[a-')"}])],
            ["invalid regular expression '[a-'"],
        ),
        (
            [vap(validations=[{"expression": "duration('5 minutes') > duration('1s')"}])],
            ["invalid duration '5 minutes'"],
        ),
        (
            [vap(validations=[{"expression": "object.metadata.name.find('\\\\pL') == ''"}])],
            ["not supported by find/findAll"],
        ),
        (
            [vap(), vapb(validationAction=["Deny"])],
            ["ValidatingAdmissionPolicyBinding b", "spec.validationAction: unknown field"],
        ),
        ([vap(), vapb(policyName="other")], ["no ValidatingAdmissionPolicy 'other'"]),
        ([vap(), vapb(validationActions=["Deny", "Warn"])], ["Deny and Warn may not be used together"]),
        ([vap(), vapb(validationActions=["Block"])], ["spec.validationActions"]),
        ([vap(matchConstraints={})], ["spec.matchConstraints.resourceRules: required"]),
        ([vap(failurePolicy="Sometimes")], ["spec.failurePolicy"]),
        (
            [
                vap(paramKind={"apiVersion": "v1", "kind": "ConfigMap"}),
                vapb(paramRef={"name": "limits", "namespace": "x", "parameterNotFoundAction": "Deny"}),
            ],
            ["param ConfigMap x/limits (v1) not found"],
        ),
        (
            [vap(validations=[{"expression": "true", "messageExpression": "1 + 1"}])],
            ["messageExpression: must evaluate to string but got int"],
        ),
    ],
)
def test_bad_policies_fail_at_load_naming_file_policy_and_expression(
    tmp_path: Path, objs: list[dict[str, Any]], fragments: list[str]
) -> None:
    with pytest.raises(PolicyError) as err:
        load_policies(write(tmp_path, *objs))
    text = str(err.value)
    assert text.startswith("policies.yaml: Validating"), text
    for fragment in fragments:
        assert fragment in text, text


def test_invalid_yaml_is_a_policy_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(PolicyError, match=r"^bad\.yaml: .*invalid YAML"):
        load_policies(tmp_path)


def test_policy_without_binding_denies(tmp_path: Path) -> None:
    ps = load_policies(write(tmp_path, vap()))
    (v,) = evaluate([cm("bad"), cm("good")], ps)
    assert (v.policy, v.binding, v.action, v.object, v.message) == ("p", "p", "Deny", "ConfigMap/app/bad", "bad name")


def test_warn_and_audit_report_but_do_not_deny(tmp_path: Path) -> None:
    ps = load_policies(write(tmp_path, vap(), vapb(validationActions=["Warn", "Audit"])))
    assert [v.action for v in evaluate([cm("bad")], ps)] == ["Warn", "Audit"]


def test_runtime_error_follows_failure_policy(tmp_path: Path) -> None:
    check = [{"expression": "object.data.missing == 'x'", "message": "m"}]
    failing = load_policies(write(tmp_path, vap(validations=check)))
    (v,) = evaluate([cm("any")], failing)
    assert v.message == "expression 'object.data.missing == 'x'' resulted in error: no such key: missing"
    ignoring = load_policies(write(tmp_path, vap(validations=check, failurePolicy="Ignore")))
    assert evaluate([cm("any")], ignoring) == []


def test_namespace_from_the_render_and_the_metadata_name_label(tmp_path: Path) -> None:
    """namespaceSelector sees the Namespace of the same render, plus the label the apiserver adds."""
    ps = load_policies(
        write(
            tmp_path,
            vap(
                matchConstraints={
                    **vap()["spec"]["matchConstraints"],
                    "namespaceSelector": {"matchLabels": {"env": "prod"}},
                }
            ),
        )
    )
    ns = Manifest(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app", "labels": {"env": "prod"}}}, "ns.yaml", 1
    )
    assert [v.object for v in evaluate([ns, cm("bad")], ps)] == ["ConfigMap/app/bad"]
    assert evaluate([cm("bad")], ps) == []  # namespace not in the render: only the metadata.name label
    by_name = load_policies(
        write(
            tmp_path,
            vap(
                matchConstraints={
                    **vap()["spec"]["matchConstraints"],
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "app"}},
                }
            ),
        )
    )
    assert [v.object for v in evaluate([cm("bad")], by_name)] == ["ConfigMap/app/bad"]


def test_object_without_namespace_is_judged_in_default(tmp_path: Path) -> None:
    ps = load_policies(
        write(
            tmp_path,
            vap(
                validations=[
                    {"expression": "object.metadata.namespace == 'x'", "messageExpression": "request.namespace"}
                ]
            ),
        )
    )
    (v,) = evaluate([cm("a", ns=None)], ps)
    assert (v.object, v.message) == ("ConfigMap/default/a", "default")


def test_object_without_namespace_is_judged_where_the_sync_puts_it(tmp_path: Path) -> None:
    """A sync applies namespace-less objects (a chart's, usually) into its default namespace: the
    gate must judge them there, or a binding that selects that namespace never sees them."""
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "team-a"}}
    ps = load_policies(
        write(tmp_path, vap(matchConstraints={**vap()["spec"]["matchConstraints"], "namespaceSelector": selector}))
    )
    assert evaluate([cm("bad", ns=None)], ps) == []  # judged in "default": not selected
    (v,) = evaluate([cm("bad", ns=None)], ps, default_namespace="team-a")
    assert v.object == "ConfigMap/team-a/bad"
    assert evaluate([cm("bad", ns="other")], ps, default_namespace="team-a") == []  # a named one keeps its own


def test_crd_plural_from_the_render(tmp_path: Path) -> None:
    rule = {"apiGroups": ["example.com"], "apiVersions": ["*"], "resources": ["widgetries"], "operations": ["CREATE"]}
    ps = load_policies(
        write(tmp_path, vap(matchConstraints={"resourceRules": [rule]}, validations=[{"expression": "false"}]))
    )
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgetries.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgetries"}},
    }
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "app"}}
    assert evaluate([Manifest(widget, "w.yaml", 1)], ps) == []  # without the CRD: guessed plural "widgets"
    (v,) = evaluate([Manifest(crd, "crd.yaml", 1), Manifest(widget, "w.yaml", 1)], ps)
    assert v.object == "Widget/app/w"


def test_a_pattern_built_at_run_time_is_not_mistaken_for_a_literal(tmp_path: Path) -> None:
    check = [{"expression": "object.metadata.name.matches('^(' + 'ok|fine' + ')$')", "message": "m"}]
    ps = load_policies(write(tmp_path, vap(validations=check)))
    assert [v.object for v in evaluate([cm("ok"), cm("bad")], ps)] == ["ConfigMap/app/bad"]


def test_helpers_for_the_sync_engine(tmp_path: Path) -> None:
    from reconciler.policy import counts, denied, describe

    ps = load_policies(write(tmp_path, vap(), vapb(name="warn", validationActions=["Warn"]), vapb(name="deny")))
    violations = evaluate([cm("bad"), cm("good")], ps)
    assert denied(violations)
    assert not denied([v for v in violations if v.action != "Deny"])
    assert counts(violations) == {("p", "Deny"): 1, ("p", "Warn"): 1}
    assert describe(violations[0]) == "Deny by policy p (binding deny): ConfigMap/app/bad in app.yaml: bad name"
