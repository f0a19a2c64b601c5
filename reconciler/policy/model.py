"""ValidatingAdmissionPolicy, evaluated offline on rendered objects before anything is applied.

The format is Kubernetes' own (admissionregistration.k8s.io/v1), so the files that gate a
sync can also be installed on the cluster for admission-time enforcement, and so that
what we decide is what the apiserver would decide.  Every object is judged as a CREATE by
the apiserver would judge it (``oldObject`` is null); the semantics follow
k8s.io/apiserver ``pkg/admission/plugin/policy/validating`` (v1.35): matching, params,
match conditions, variables, validations, failure policy, validation actions, and the
messages, word for word.  ``tests/integration/test_policy_differential.py`` compares our
verdicts with a real apiserver's.

Deliberate differences, each documented in docs/policies.md:

* **Fail closed at load.**  Like the apiserver (which refuses to store a policy whose
  expression does not compile), and also where it would store a policy and then skip or fail
  on it at request time, we refuse to load it: a compile error, an unknown field, a binding to
  a missing policy, a missing param, a CEL library we lack, ``authorizer``.  Errors name the
  file, the policy and the expression.
* **A policy without a binding** in the folder is evaluated as if bound with
  ``validationActions: [Deny]`` (on a cluster it would do nothing until bound).
* **The object is the one in git**, before the apiserver's defaulting and mutation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.policy.celenv import REQUEST_FIELDS, Compiled, activation
from reconciler.render.namespaces import Scope
from reconciler.render.selectors import Requirement

GROUP = "admissionregistration.k8s.io"
VAP, VAPB = "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"


class ValidationAction(StrEnum):
    """A binding's ``validationActions``: what a failed validation does (the apiserver's spelling)."""

    DENY = "Deny"  # blocks the sync (in enforce mode)
    WARN = "Warn"  # reported, as the apiserver's Warning header
    AUDIT = "Audit"  # reported, as the apiserver's audit annotation


class FailurePolicy(StrEnum):
    """``spec.failurePolicy``: whether an expression or configuration error denies (Fail) or passes."""

    FAIL = "Fail"
    IGNORE = "Ignore"


class ParamNotFound(StrEnum):
    """``paramRef.parameterNotFoundAction``: what a binding does when no param matches."""

    ALLOW = "Allow"
    DENY = "Deny"


class Reason(StrEnum):
    """``validations[].reason``: the HTTP reason the apiserver would answer with."""

    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    INVALID = "Invalid"
    REQUEST_ENTITY_TOO_LARGE = "RequestEntityTooLarge"


class PolicyMode(StrEnum):
    """How a GitSync uses the verdicts (``spec.policy.mode``, ``--policy-mode``)."""

    ENFORCE = "enforce"  # a Deny violation stops the whole revision
    AUDIT = "audit"  # violations are reported, nothing is stopped
    OFF = "off"  # policies are not evaluated


class SelectorOperator(StrEnum):
    """A label selector's ``matchExpressions[].operator``."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class RuleScope(StrEnum):
    """A resource rule's ``scope``: which objects it can match by where they live."""

    ANY = "*"
    CLUSTER = "Cluster"
    NAMESPACED = "Namespaced"


ACTIONS = tuple(ValidationAction)
REASONS = tuple(Reason)
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")
MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
USER = {"username": "system:serviceaccount:reconciler-system:gitops-reconciler", "groups": ["system:authenticated"]}
VAR_REF = re.compile(r"\bvariables\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
AUTHORIZER = re.compile(r"\bauthorizer\b")


class PolicyError(Exception):
    """A policy set that cannot be used: names the file, the policy and (if any) the expression."""

    def __init__(self, file: str, policy: str, *, why: str, expression: str | None = None) -> None:
        self.file, self.policy, self.why, self.expression = file, policy, why, expression
        at = f" expression {expression!r}:" if expression is not None else ""
        super().__init__(f"{file}: {policy}:{at} {why}")


@dataclass(frozen=True)
class Violation:
    """One failed validation of one object, as a row of ``reconciler check``.

    ``message`` is the apiserver's decision message (without the ``ValidatingAdmissionPolicy
    'p' with binding 'b' denied request:`` frame: see :func:`admission_message`).
    """

    policy: str
    binding: str
    action: ValidationAction
    object: str  # Kind/namespace/name (Kind/name if cluster-scoped)
    file: str
    message: str
    reason: Reason = Reason.INVALID


def admission_message(v: Violation) -> str:
    """The text the apiserver puts in its Status (Deny) or Warning header (Warn) for ``v``."""
    if v.action == ValidationAction.WARN:
        return f"Validation failed for ValidatingAdmissionPolicy '{v.policy}' with binding '{v.binding}': {v.message}"
    return f"ValidatingAdmissionPolicy '{v.policy}' with binding '{v.binding}' denied request: {v.message}"


def describe(v: Violation) -> str:
    """One line for a log record or a ``PolicyViolation`` Event: action, policy, object, file, message."""
    return f"{v.action} by policy {v.policy} (binding {v.binding}): {v.object} in {v.file}: {v.message}"


def counts(violations: Sequence[Violation]) -> dict[tuple[str, str], int]:
    """Violations per (policy, action): the values of ``reconciler_policy_violations`` for one GitSync."""
    out: dict[tuple[str, str], int] = {}
    for v in violations:
        out[(v.policy, v.action)] = out.get((v.policy, v.action), 0) + 1
    return out


def denied(violations: Sequence[Violation]) -> bool:
    """Whether an enforcing sync must stop: any ``Deny`` violation (Warn and Audit only report)."""
    return any(v.action == ValidationAction.DENY for v in violations)


# --------------------------------------------------------------------------- model


@dataclass
class Request:
    """What the matchers and ``request`` see for one object created in one namespace."""

    group: str
    version: str
    kind: str
    resource: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    ns_labels: Mapping[str, str]
    ns_object: dict[str, Any] | None

    _data: dict[str, Any] | None = None
    _acts: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    variables: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    obj: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        """The CEL variables every policy sees for this object (``params`` and ``variables`` aside)."""
        if self._data is None:
            request = self.cel()
            d: dict[str, Any] = {"object": self.obj, "oldObject": None, "request": request, "namespaceObject": None}
            for k in REQUEST_FIELDS:
                d[k] = request.get(k.removeprefix("request."), "")
            self._data = d
        return self._data

    def activation(self, key: tuple[Any, ...], data: Mapping[str, Any]) -> Any:
        act = self._acts.get(key)
        if act is None:
            act = self._acts[key] = activation(data)
        return act

    def cel(self) -> dict[str, Any]:
        gvk = {"group": self.group, "version": self.version, "kind": self.kind}
        gvr = {"group": self.group, "version": self.version, "resource": self.resource}
        out: dict[str, Any] = {
            "uid": "",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": self.name,
            "operation": "CREATE",
            "userInfo": USER,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
        if self.namespace:
            out["namespace"] = self.namespace
        elif (self.group, self.resource) == ("", "namespaces"):
            out["namespace"] = self.name  # the apiserver's request for a Namespace carries its own name
        return out


Selector = tuple[Requirement, ...]  # all must match; () matches everything (render/selectors: one matcher)


@dataclass(frozen=True)
class Rule:
    groups: tuple[str, ...]
    versions: tuple[str, ...]
    resources: tuple[str, ...]
    operations: tuple[str, ...]
    scope: RuleScope
    names: tuple[str, ...]

    def matches(self, req: Request) -> bool:
        if self.scope == RuleScope.NAMESPACED and (req.resource == "namespaces" or not req.namespace):
            return False
        if self.scope == RuleScope.CLUSTER and not (req.resource == "namespaces" or not req.namespace):
            return False
        if not any(op in ("*", "CREATE") for op in self.operations):
            return False
        if not _wild(self.groups, req.group) or not _wild(self.versions, req.version):
            return False
        if not any(_resource_matches(r, req.resource) for r in self.resources):
            return False
        return not self.names or req.name in self.names


def _wild(items: tuple[str, ...], value: str) -> bool:
    return "*" in items or value in items


def _resource_matches(rule: str, resource: str) -> bool:
    res, _, sub = rule.partition("/")
    return (res in ("*", resource)) and (sub in ("*", ""))


@dataclass(frozen=True)
class Match:
    namespace_selector: Selector = ()
    object_selector: Selector = ()
    rules: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()

    def matches(self, req: Request) -> bool:
        if (req.namespace or req.resource == "namespaces") and not selects(self.namespace_selector, req.ns_labels):
            return False
        if not selects(self.object_selector, req.labels):
            return False
        if any(r.matches(req) for r in self.exclude):
            return False
        return not self.rules or any(r.matches(req) for r in self.rules)


def selects(selector: Selector, labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in selector)


@dataclass(frozen=True)
class Validation:
    expression: Compiled
    message: str
    message_expression: Compiled | None
    reason: Reason


@dataclass(frozen=True)
class ParamRef:
    name: str
    namespace: str
    selector: Selector | None
    not_found: ParamNotFound


@dataclass
class Policy:
    name: str
    file: str
    failure_policy: FailurePolicy
    param_kind: tuple[str, str] | None  # (apiVersion, kind)
    match: Match
    match_conditions: list[tuple[str, Compiled]]
    variables: list[tuple[str, Compiled]]
    validations: list[Validation]
    audit_annotations: list[tuple[str, Compiled]]
    condition_refs: frozenset[str] = frozenset()  # activation names the match conditions read
    validation_refs: frozenset[str] = frozenset()  # ... and the validations, messages, annotations

    def __post_init__(self) -> None:
        self.condition_refs = frozenset().union(*(c.refs for _, c in self.match_conditions))
        exprs = [v.expression for v in self.validations]
        exprs += [v.message_expression for v in self.validations if v.message_expression is not None]
        exprs += [a for _, a in self.audit_annotations]
        self.validation_refs = frozenset().union(*(e.refs for e in exprs))


@dataclass(frozen=True)
class Binding:
    name: str
    file: str
    policy_name: str
    param_ref: ParamRef | None
    match: Match | None
    actions: tuple[ValidationAction, ...]
    implicit: bool = False


@dataclass
class PolicySet:
    """Loaded, compiled policies with their bindings and params: what :func:`evaluate` needs."""

    policies: list[Policy] = field(default_factory=list)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)  # by policy name
    params: list[dict[str, Any]] = field(default_factory=list)
    param_scope: Scope = field(default_factory=lambda: Scope(()))
