"""The fields of ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding (admissionregistration.k8s.io/v1).

A policy is a safety gate: a misspelt field (``validationAction`` for ``validationActions``,
``matchConstraint``) would silently make it check less, so every field not in this table is
a load error naming its path (the apiserver also rejects unknown fields with
``fieldValidation=Strict``, kubectl's default).  ``status`` is accepted and ignored, so a
policy exported with ``kubectl get -o yaml`` loads.
"""

from __future__ import annotations

from typing import Any

# A schema is: "str" | "int" | "bool" | "any" | ["list", item] | {field: schema} ("*" = any keys, str values).
Schema = Any

STRING_MAP: Schema = {"*": "str"}
LABEL_SELECTOR: Schema = {
    "matchLabels": STRING_MAP,
    "matchExpressions": ["list", {"key": "str", "operator": "str", "values": ["list", "str"]}],
}
RULE: Schema = {
    "apiGroups": ["list", "str"],
    "apiVersions": ["list", "str"],
    "resources": ["list", "str"],
    "operations": ["list", "str"],
    "scope": "str",
    "resourceNames": ["list", "str"],
}
MATCH_RESOURCES: Schema = {
    "namespaceSelector": LABEL_SELECTOR,
    "objectSelector": LABEL_SELECTOR,
    "resourceRules": ["list", RULE],
    "excludeResourceRules": ["list", RULE],
    "matchPolicy": "str",
}
METADATA: Schema = "any"

POLICY_SPEC: Schema = {
    "failurePolicy": "str",
    "paramKind": {"apiVersion": "str", "kind": "str"},
    "matchConstraints": MATCH_RESOURCES,
    "validations": ["list", {"expression": "str", "message": "str", "messageExpression": "str", "reason": "str"}],
    "auditAnnotations": ["list", {"key": "str", "valueExpression": "str"}],
    "matchConditions": ["list", {"name": "str", "expression": "str"}],
    "variables": ["list", {"name": "str", "expression": "str"}],
}
BINDING_SPEC: Schema = {
    "policyName": "str",
    "paramRef": {
        "name": "str",
        "namespace": "str",
        "selector": LABEL_SELECTOR,
        "parameterNotFoundAction": "str",
    },
    "matchResources": MATCH_RESOURCES,
    "validationActions": ["list", "str"],
}
TOP: Schema = {"apiVersion": "str", "kind": "str", "metadata": METADATA, "spec": "any", "status": "any"}


def check(value: Any, schema: Schema, path: str) -> list[str]:
    """Every problem of ``value`` against ``schema``, as ``path: why`` strings (empty if none)."""
    if schema == "any":
        return []
    if schema == "str":
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {_kind(value)}"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {_kind(value)}"]
        out: list[str] = []
        for i, item in enumerate(value):
            out.extend(check(item, schema[1], f"{path}[{i}]"))
        return out
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping, got {_kind(value)}"]
    out = []
    for key, item in value.items():
        if "*" in schema:
            out.extend(check(item, schema["*"], f"{path}[{key}]"))
        elif key not in schema:
            out.append(f"{path}.{key}: unknown field")
        else:
            out.extend(check(item, schema[key], f"{path}.{key}"))
    return out


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
