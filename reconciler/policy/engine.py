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

import base64
import contextlib
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.policy import schema
from reconciler.policy.celenv import (
    BOOL,
    NULL,
    REQUEST_FIELDS,
    STRING,
    CelError,
    Compiled,
    Environment,
    EvalError,
    activation,
)
from reconciler.policy.resources import Resources
from reconciler.render.errors import ManifestError
from reconciler.render.manifests import Manifest, load_path
from reconciler.render.namespaces import Scope, group_kind
from reconciler.render.selectors import group_version

__all__ = [
    "Binding",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Violation",
    "admission_message",
    "counts",
    "denied",
    "describe",
    "evaluate",
    "load_policies",
    "policy_set_from_manifests",
]

GROUP = "admissionregistration.k8s.io"
VAP, VAPB = "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"
ACTIONS = ("Deny", "Warn", "Audit")
REASONS = ("Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge")
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")
MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
USER = {"username": "system:serviceaccount:reconciler-system:gitops-reconciler", "groups": ["system:authenticated"]}
_VAR_REF = re.compile(r"\bvariables\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_AUTHORIZER = re.compile(r"\bauthorizer\b")


class PolicyError(Exception):
    """A policy set that cannot be used: names the file, the policy and (if any) the expression."""

    def __init__(self, file: str, policy: str, why: str, expression: str | None = None) -> None:
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
    action: str  # Deny | Warn | Audit
    object: str  # Kind/namespace/name (Kind/name if cluster-scoped)
    file: str
    message: str
    reason: str = "Invalid"


def admission_message(v: Violation) -> str:
    """The text the apiserver puts in its Status (Deny) or Warning header (Warn) for ``v``."""
    if v.action == "Warn":
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
    return any(v.action == "Deny" for v in violations)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "Exists":
            return self.key in labels
        if self.op == "DoesNotExist":
            return self.key not in labels
        if self.op == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


Selector = tuple[Requirement, ...]  # all must match; () matches everything


@dataclass(frozen=True)
class Rule:
    groups: tuple[str, ...]
    versions: tuple[str, ...]
    resources: tuple[str, ...]
    operations: tuple[str, ...]
    scope: str
    names: tuple[str, ...]

    def matches(self, req: Request) -> bool:
        if self.scope == "Namespaced" and (req.resource == "namespaces" or not req.namespace):
            return False
        if self.scope == "Cluster" and not (req.resource == "namespaces" or not req.namespace):
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
        if (req.namespace or req.resource == "namespaces") and not _selects(self.namespace_selector, req.ns_labels):
            return False
        if not _selects(self.object_selector, req.labels):
            return False
        if any(r.matches(req) for r in self.exclude):
            return False
        return not self.rules or any(r.matches(req) for r in self.rules)


def _selects(selector: Selector, labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in selector)


@dataclass(frozen=True)
class Validation:
    expression: Compiled
    message: str
    message_expression: Compiled | None
    reason: str


@dataclass(frozen=True)
class ParamRef:
    name: str
    namespace: str
    selector: Selector | None
    not_found: str  # Allow | Deny


@dataclass
class Policy:
    name: str
    file: str
    failure_policy: str
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
    actions: tuple[str, ...]
    implicit: bool = False


@dataclass
class PolicySet:
    """Loaded, compiled policies with their bindings and params: what :func:`evaluate` needs."""

    policies: list[Policy] = field(default_factory=list)
    bindings: dict[str, list[Binding]] = field(default_factory=dict)  # by policy name
    params: list[dict[str, Any]] = field(default_factory=list)
    param_scope: Scope = field(default_factory=lambda: Scope(()))


# --------------------------------------------------------------------------- loading


def load_policies(path: Path) -> PolicySet:
    """Every policy, binding and param under ``path`` (a file or a folder), compiled.

    Raises :class:`PolicyError` (naming file, policy, expression) for anything that would
    make a policy check less than it says: the caller must refuse to proceed.
    """
    try:
        manifests = load_path(Path(path))
    except ManifestError as e:
        raise PolicyError(e.file, f"document {e.doc}" if e.doc else "-", e.why) from None
    return policy_set_from_manifests(manifests)


def policy_set_from_manifests(manifests: Sequence[Manifest]) -> PolicySet:
    """:func:`load_policies` on already-loaded objects (everything that is not a VAP/VAPB is a param)."""
    policies: dict[str, Policy] = {}
    bindings: list[Binding] = []
    params: list[dict[str, Any]] = []
    for m in manifests:
        group, kind = group_kind(m.obj)
        if group == GROUP and kind in (VAP, VAPB):
            version = group_version(m.obj["apiVersion"])[1]
            where = f"{kind} {m.obj['metadata']['name']}"
            if version != "v1":
                raise PolicyError(m.file, where, f"apiVersion {m.obj['apiVersion']} is not supported (use {GROUP}/v1)")
            problems = schema.check(m.obj, schema.TOP, "") + schema.check(
                m.obj.get("spec"), schema.POLICY_SPEC if kind == VAP else schema.BINDING_SPEC, "spec"
            )
            if problems:
                raise PolicyError(m.file, where, "; ".join(p.lstrip(".") for p in problems))
            if kind == VAP:
                p = _policy(m)
                if p.name in policies:
                    raise PolicyError(m.file, where, f"defined twice (also in {policies[p.name].file})")
                policies[p.name] = p
            else:
                bindings.append(_binding(m))
        else:
            params.append(m.obj)
    out = PolicySet(params=params, param_scope=Scope(params))
    seen: set[str] = set()
    for b in bindings:
        if b.name in seen:
            raise PolicyError(b.file, f"{VAPB} {b.name}", "defined twice")
        seen.add(b.name)
        if b.policy_name not in policies:
            raise PolicyError(
                b.file, f"{VAPB} {b.name}", f"spec.policyName: no ValidatingAdmissionPolicy {b.policy_name!r}"
            )
        out.bindings.setdefault(b.policy_name, []).append(b)
    for name in sorted(policies):
        p = policies[name]
        out.policies.append(p)
        if name not in out.bindings:
            out.bindings[name] = [Binding(name, p.file, name, None, None, ("Deny",), implicit=True)]
        out.bindings[name].sort(key=lambda b: b.name)
        for b in out.bindings[name]:
            _check_params(out, p, b)
    return out


def _policy(m: Manifest) -> Policy:
    name = m.obj["metadata"]["name"]
    where = f"{VAP} {name}"
    spec = m.obj.get("spec") or {}

    def fail(why: str, expression: str | None = None) -> PolicyError:
        return PolicyError(m.file, where, why, expression)

    failure = spec.get("failurePolicy", "Fail")
    if failure not in ("Fail", "Ignore"):
        raise fail(f"spec.failurePolicy: must be Fail or Ignore, not {failure!r}")
    pk = spec.get("paramKind")
    param_kind = None
    if pk is not None:
        if not pk.get("apiVersion") or not pk.get("kind"):
            raise fail("spec.paramKind: apiVersion and kind are required")
        param_kind = (pk["apiVersion"], pk["kind"])
    mc = spec.get("matchConstraints")
    if not mc or not mc.get("resourceRules"):
        raise fail("spec.matchConstraints.resourceRules: required (which resources the policy applies to)")
    match = _match(mc, "spec.matchConstraints", fail)
    if not spec.get("validations") and not spec.get("auditAnnotations"):
        raise fail("spec.validations: at least one validation (or auditAnnotation) is required")

    has_params = param_kind is not None
    base = Environment(has_params)

    def compile_(env: Environment, source: Any, field_path: str, want: Sequence[Any] = ()) -> Compiled:
        if not isinstance(source, str) or not source.strip():
            raise fail(f"{field_path}: required")
        if _AUTHORIZER.search(source):
            raise fail("authorizer is not supported offline (it needs the cluster's RBAC)", source)
        try:
            return env.compile(source, want)
        except CelError as e:
            raise fail(f"{field_path}: {e}", source) from None

    conditions = []
    names: set[str] = set()
    for i, c in enumerate(spec.get("matchConditions") or []):
        cname = c.get("name") or ""
        if not cname or cname in names:
            raise fail(f"spec.matchConditions[{i}].name: required and unique")
        names.add(cname)
        src = c.get("expression")
        if isinstance(src, str) and _VAR_REF.search(src):
            raise fail(f"spec.matchConditions[{i}]: variables are not available in matchConditions", src)
        conditions.append((cname, compile_(base, src, f"spec.matchConditions[{i}].expression", [BOOL])))

    variables: list[tuple[str, Compiled]] = []
    types: dict[str, Any] = {}
    env = base
    for i, v in enumerate(spec.get("variables") or []):
        vname = v.get("name") or ""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", vname) or vname in types:
            raise fail(f"spec.variables[{i}].name: {vname!r} must be a unique CEL identifier")
        compiled = compile_(env, v.get("expression"), f"spec.variables[{i}].expression")
        variables.append((vname, compiled))
        types[vname] = compiled.return_type
        env = Environment(has_params, types)

    validations = []
    for i, v in enumerate(spec.get("validations") or []):
        expr = compile_(env, v.get("expression"), f"spec.validations[{i}].expression", [BOOL])
        msg_expr = None
        if v.get("messageExpression"):
            msg_expr = compile_(env, v["messageExpression"], f"spec.validations[{i}].messageExpression", [STRING])
        reason = v.get("reason", "Invalid")
        if reason not in REASONS:
            raise fail(f"spec.validations[{i}].reason: must be one of {', '.join(REASONS)}")
        message = v.get("message", "")
        if "\n" in message.strip():
            raise fail(f"spec.validations[{i}].message: must not contain line breaks")
        validations.append(Validation(expr, message, msg_expr, reason))

    audits = []
    for i, a in enumerate(spec.get("auditAnnotations") or []):
        src = a.get("valueExpression")
        audits.append(
            (a.get("key", ""), compile_(env, src, f"spec.auditAnnotations[{i}].valueExpression", [STRING, NULL]))
        )
    return Policy(name, m.file, failure, param_kind, match, conditions, variables, validations, audits)


def _binding(m: Manifest) -> Binding:
    name = m.obj["metadata"]["name"]
    spec = m.obj.get("spec") or {}

    def fail(why: str) -> PolicyError:
        return PolicyError(m.file, f"{VAPB} {name}", why)

    policy_name = spec.get("policyName")
    if not policy_name:
        raise fail("spec.policyName: required")
    actions = tuple(spec.get("validationActions") or ())
    if not actions:
        raise fail("spec.validationActions: required (Deny, Warn and/or Audit)")
    if len(set(actions)) != len(actions) or any(a not in ACTIONS for a in actions):
        raise fail(f"spec.validationActions: {list(actions)}: each of Deny, Warn, Audit at most once")
    if "Deny" in actions and "Warn" in actions:
        raise fail("spec.validationActions: Deny and Warn may not be used together")
    ref = spec.get("paramRef")
    param_ref = None
    if ref is not None:
        if bool(ref.get("name")) == ("selector" in ref):
            raise fail("spec.paramRef: exactly one of name and selector")
        not_found = ref.get("parameterNotFoundAction")
        if not_found not in ("Allow", "Deny"):
            raise fail("spec.paramRef.parameterNotFoundAction: required, Allow or Deny")
        selector = _selector(ref["selector"], "spec.paramRef.selector", fail) if "selector" in ref else None
        param_ref = ParamRef(ref.get("name", ""), ref.get("namespace", ""), selector, not_found)
    mr = spec.get("matchResources")
    match = _match(mr, "spec.matchResources", fail) if mr is not None else None
    return Binding(name, m.file, policy_name, param_ref, match, actions)


def _match(spec: Mapping[str, Any], path: str, fail: Any) -> Match:
    policy = spec.get("matchPolicy", "Equivalent")
    if policy not in ("Exact", "Equivalent"):
        raise fail(f"{path}.matchPolicy: must be Exact or Equivalent")
    return Match(
        namespace_selector=_selector(spec.get("namespaceSelector") or {}, f"{path}.namespaceSelector", fail),
        object_selector=_selector(spec.get("objectSelector") or {}, f"{path}.objectSelector", fail),
        rules=tuple(
            _rule(r, f"{path}.resourceRules[{i}]", fail) for i, r in enumerate(spec.get("resourceRules") or [])
        ),
        exclude=tuple(
            _rule(r, f"{path}.excludeResourceRules[{i}]", fail)
            for i, r in enumerate(spec.get("excludeResourceRules") or [])
        ),
    )


def _rule(spec: Mapping[str, Any], path: str, fail: Any) -> Rule:
    for key in ("apiGroups", "apiVersions", "resources", "operations"):
        if not spec.get(key):
            raise fail(f"{path}.{key}: required")
    bad = [op for op in spec["operations"] if op not in OPERATIONS]
    if bad:
        raise fail(f"{path}.operations: {bad[0]!r} is not one of {', '.join(OPERATIONS)}")
    scope = spec.get("scope", "*")
    if scope not in ("*", "Cluster", "Namespaced"):
        raise fail(f"{path}.scope: must be *, Cluster or Namespaced")
    return Rule(
        tuple(spec["apiGroups"]),
        tuple(spec["apiVersions"]),
        tuple(spec["resources"]),
        tuple(spec["operations"]),
        scope,
        tuple(spec.get("resourceNames") or ()),
    )


def _selector(spec: Mapping[str, Any], path: str, fail: Any) -> Selector:
    reqs = [Requirement(k, "In", (v,)) for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for i, e in enumerate(spec.get("matchExpressions") or []):
        op, values = e.get("operator"), tuple(e.get("values") or ())
        if not e.get("key") or op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise fail(f"{path}.matchExpressions[{i}]: needs a key and operator In, NotIn, Exists or DoesNotExist")
        if (op in ("In", "NotIn")) != bool(values):
            raise fail(f"{path}.matchExpressions[{i}].values: required for In/NotIn, forbidden otherwise")
        reqs.append(Requirement(e["key"], op, values))
    return tuple(reqs)


def _check_params(ps: PolicySet, p: Policy, b: Binding) -> None:
    """Fail closed on a param that can be looked up now (fixed name and namespace) and is missing."""
    if p.param_kind is None or b.param_ref is None:
        return
    ref = b.param_ref
    namespaced = not ps.param_scope.cluster_scoped({"apiVersion": p.param_kind[0], "kind": p.param_kind[1]})
    if not namespaced and ref.namespace:
        raise PolicyError(
            b.file, f"{VAPB} {b.name}", "spec.paramRef.namespace: must be empty for a cluster-scoped paramKind"
        )
    if ref.name and (ref.namespace or not namespaced) and not _params_for(ps, p, ref, ref.namespace):
        what = f"{p.param_kind[1]} {ref.namespace + '/' if ref.namespace else ''}{ref.name}"
        raise PolicyError(b.file, f"{VAPB} {b.name}", f"spec.paramRef: param {what} ({p.param_kind[0]}) not found")


def _params_for(ps: PolicySet, p: Policy, ref: ParamRef, namespace: str) -> list[dict[str, Any]]:
    assert p.param_kind is not None
    api_version, kind = p.param_kind
    out = []
    for obj in ps.params:
        if obj.get("apiVersion") != api_version or obj.get("kind") != kind:
            continue
        md = obj["metadata"]
        if namespace and (md.get("namespace") or "default") != namespace:
            continue
        if ref.name and md["name"] != ref.name:
            continue
        if ref.selector is not None and not _selects(ref.selector, md.get("labels") or {}):
            continue
        out.append(obj)
    return out


# --------------------------------------------------------------------------- evaluation


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


_MISSING = object()


class _Context:
    """Per render: scope, plurals, and the Namespace objects (the apiserver labels each
    with ``kubernetes.io/metadata.name``, so we do too)."""

    def __init__(self, manifests: Sequence[Manifest]) -> None:
        objs = [m.obj for m in manifests]
        self.scope = Scope(objs)
        self.resources = Resources(objs)
        self.namespaces: dict[str, dict[str, Any]] = {}
        for o in objs:
            if group_kind(o) == ("", "Namespace"):
                self.namespaces[o["metadata"]["name"]] = _namespace(o["metadata"]["name"], o)

    def namespace(self, name: str) -> dict[str, Any]:
        ns = self.namespaces.get(name)
        if ns is None:
            ns = self.namespaces[name] = _namespace(name, None)
        return ns

    def request(self, obj: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        group, version = group_version(obj["apiVersion"])
        kind = obj["kind"]
        md = obj["metadata"]
        cluster = self.scope.cluster_scoped(obj)
        namespace = "" if cluster else (md.get("namespace") or "default")
        if not cluster and not md.get("namespace"):
            obj = {**obj, "metadata": {**md, "namespace": namespace}}
        resource = self.resources.plural(group, kind)
        if (group, kind) == ("", "Namespace"):
            ns_obj = None
            ns_labels = self.namespace(md["name"])["metadata"]["labels"]
            labels = ns_labels
        else:
            ns_obj = self.namespace(namespace) if namespace else None
            ns_labels = ns_obj["metadata"]["labels"] if ns_obj else {}
            labels = md.get("labels") or {}
        req = Request(group, version, kind, resource, namespace, md["name"], labels, ns_labels, ns_obj, obj=obj)
        return req, obj


def _namespace(name: str, obj: dict[str, Any] | None) -> dict[str, Any]:
    """The ``namespaceObject`` the apiserver would pass (metadata, spec, status only)."""
    md = (obj or {}).get("metadata") or {}
    labels = {**(md.get("labels") or {}), "kubernetes.io/metadata.name": name}
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if md.get("annotations"):
        meta["annotations"] = md["annotations"]
    out: dict[str, Any] = {"metadata": meta, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    return out


def object_ref(obj: Mapping[str, Any], namespace: str) -> str:
    """``Kind/namespace/name``, or ``Kind/name`` for a cluster-scoped object."""
    name = obj["metadata"]["name"]
    return f"{obj['kind']}/{namespace}/{name}" if namespace else f"{obj['kind']}/{name}"


def evaluate(manifests: Sequence[Manifest], policy_set: PolicySet) -> list[Violation]:
    """Every violation of every object in ``manifests`` (one render), in object then policy order.

    Deny violations block a sync (in enforce mode); Warn and Audit ones are reported.
    Never raises for a policy problem at run time: an expression error becomes a
    violation according to the policy's ``failurePolicy``, as on the apiserver.
    """
    ctx = _Context(manifests)
    out: list[Violation] = []
    for m in manifests:
        req, obj = ctx.request(m.obj)
        ref = object_ref(obj, req.namespace)
        for p in policy_set.policies:
            if not p.match.matches(req):
                continue
            for b in policy_set.bindings.get(p.name, ()):
                found = _evaluate_binding(policy_set, p, b, req, obj, ref, m.file)
                if found and (req.group, req.kind) == ("", "Secret"):
                    found = [_scrub(x, obj) for x in found]
                out.extend(found)
    return out


def _scrub(v: Violation, secret: Mapping[str, Any]) -> Violation:
    """``v`` without any value of ``secret`` in its message: a policy message may quote a field,
    and a Secret value must never reach a log, an Event or a CI report."""
    values: set[str] = set()
    for key in ("data", "stringData"):
        for value in (secret.get(key) or {}).values():
            if isinstance(value, str) and len(value) >= 4:
                values.add(value)
                if key == "data":
                    with contextlib.suppress(ValueError, UnicodeDecodeError):
                        values.add(base64.b64decode(value, validate=True).decode())
    message = v.message
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= 4:
            message = message.replace(value, "***")
    return v if message == v.message else dataclasses.replace(v, message=message)


def _evaluate_binding(
    ps: PolicySet, p: Policy, b: Binding, req: Request, obj: dict[str, Any], ref: str, file: str
) -> Iterable[Violation]:
    if b.match is not None and not b.match.matches(req):
        return []

    def config_error(why: str) -> list[Violation]:
        if p.failure_policy == "Ignore":
            return []
        return [Violation(p.name, b.name, "Deny", ref, file, f"failed to configure binding: {why}")]

    params: list[dict[str, Any] | None] = [None]
    if p.param_kind is not None and b.param_ref is not None:
        r = b.param_ref
        namespaced = not ps.param_scope.cluster_scoped({"apiVersion": p.param_kind[0], "kind": p.param_kind[1]})
        namespace = r.namespace or (req.namespace if namespaced else "")
        if namespaced and not namespace:
            return config_error(
                "cannot use namespaced paramRef in policy binding that matches cluster-scoped resources"
            )
        found: list[dict[str, Any] | None] = list(_params_for(ps, p, r, namespace))
        if not found and r.not_found == "Deny":
            return config_error("no params found for policy binding with `Deny` parameterNotFoundAction")
        params = found
    out: list[Violation] = []
    for param in params:
        for action, message, reason in _decisions(p, req, obj, param):
            if action == "config":
                out.append(Violation(p.name, b.name, "Deny", ref, file, message, reason or "Invalid"))
                continue
            out.extend(Violation(p.name, b.name, a, ref, file, message, reason or "Invalid") for a in b.actions)
    return out


def _decisions(
    p: Policy, req: Request, obj: dict[str, Any], param: dict[str, Any] | None
) -> list[tuple[str, str, str]]:
    """(action, message, reason) for each failed validation; action "deny" goes through the
    binding's validationActions, "config" is denied whatever they are (an audit annotation error)."""
    fail = p.failure_policy == "Fail"
    data = dict(req.data())
    has_params = p.param_kind is not None
    if has_params:
        data["params"] = param
    # Building an activation converts every value in it, the object above all: each stage gets
    # only the names its expressions read, and activations without variables are shared by the
    # policies of one object.
    key = (id(param) if has_params else None, has_params)

    def act_for(refs: frozenset[str]) -> Any:
        sub = {k: data[k] for k in refs if k in data}
        if any(k.startswith("variables.") for k in refs):
            return activation(sub)
        return req.activation((*key, data["namespaceObject"] is not None, refs), sub)

    if p.match_conditions:
        errors = []
        act = None
        for _name, cond in p.match_conditions:
            # The same condition in several policies (not-owned-pod) is evaluated once per object.
            ckey = ("condition", cond.source, *(key if "params" in cond.refs else ()))
            r = req.variables.get(ckey, _MISSING)
            if r is _MISSING:
                act = act or act_for(p.condition_refs)
                r = req.variables[ckey] = cond.evaluate(act)
            if isinstance(r, EvalError):
                errors.append(f"expression '{cond.source}' resulted in error: {r.message}")
            elif r is False:
                return []
        if errors:
            if not fail:
                return []
            msg = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
            return [("deny", msg, "")]
    data["namespaceObject"] = req.ns_object
    failed_vars: dict[str, str] = {}
    chain: tuple[Any, ...] = key
    for vname, vexpr in p.variables:
        # Policies often share their first variables (podSpec, containers): a variable whose
        # definition and predecessors are the same has the same value, so evaluate it once per object.
        chain = (*chain, vname, vexpr.source)
        r = req.variables.get(chain, _MISSING)
        if r is _MISSING:
            r = req.variables[chain] = vexpr.evaluate(act_for(vexpr.refs))
        if isinstance(r, EvalError):
            inner = failed_vars.get(_first_failed(vexpr.source, failed_vars) or "", r.message)
            failed_vars[vname] = inner
        else:
            data[f"variables.{vname}"] = r
    out: list[tuple[str, str, str]] = []
    act = act_for(p.validation_refs)
    for v in p.validations:
        r = v.expression.evaluate(act)
        if isinstance(r, EvalError):
            if fail:
                out.append(("deny", _error_message(v.expression.source, r.message, failed_vars), ""))
            continue
        if r is True:
            continue
        message = ""
        if v.message_expression is not None:
            mr = v.message_expression.evaluate(act)
            if isinstance(mr, str):
                message = mr.strip()
                if len(message.encode()) > MAX_MESSAGE_BYTES or "\n" in message:
                    message = ""
        if not message and v.message:
            message = v.message.strip()
        if not message:
            message = f"failed expression: {v.expression.source.strip()}"
        out.append(("deny", message, v.reason))
    for _key, aexpr in p.audit_annotations:
        r = aexpr.evaluate(act)
        if isinstance(r, EvalError):
            if fail:
                out.append(("config", _error_message(aexpr.source, r.message, failed_vars), ""))
        elif r is not None and not isinstance(r, str) and fail:
            msg = (
                f"valueExpression '{aexpr.source}' resulted in unsupported return type: {type(r).__name__}. "
                "Return type must be either string or null."
            )
            out.append(("config", msg, ""))
    return out


def _first_failed(source: str, failed: Mapping[str, str]) -> str | None:
    return next((n for n in _VAR_REF.findall(source) if n in failed), None)


def _error_message(source: str, message: str, failed_vars: Mapping[str, str]) -> str:
    bad = _first_failed(source, failed_vars)
    if bad is not None:
        message = f'composited variable "{bad}" fails to evaluate: {failed_vars[bad]}'
    return f"expression '{source}' resulted in error: {message}"
