"""Reading policies, bindings and params from files, compiled once; any fault refuses the whole set.

Fail closed: a sync that cannot load its policies must not proceed, so every error here names
the file, the policy and the expression (see model.py for the semantics followed).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.policy import schema
from reconciler.policy.celenv import (
    BOOL,
    NULL,
    STRING,
    CelError,
    Compiled,
    Environment,
)
from reconciler.policy.model import (
    ACTIONS,
    AUTHORIZER,
    GROUP,
    OPERATIONS,
    REASONS,
    VAP,
    VAPB,
    VAR_REF,
    Binding,
    FailurePolicy,
    Match,
    ParamNotFound,
    ParamRef,
    Policy,
    PolicyError,
    PolicySet,
    Reason,
    Rule,
    RuleScope,
    Selector,
    SelectorOperator,
    Validation,
    ValidationAction,
    selects,
)
from reconciler.render.errors import ManifestError
from reconciler.render.manifests import Manifest, load_path
from reconciler.render.namespaces import Scope, group_kind
from reconciler.render.selectors import Operator, Requirement, group_version


def load_policies(path: Path) -> PolicySet:
    """Every policy, binding and param under ``path`` (a file or a folder), compiled.

    Raises :class:`PolicyError` (naming file, policy, expression) for anything that would
    make a policy check less than it says: the caller must refuse to proceed.
    """
    try:
        manifests = load_path(Path(path))
    except ManifestError as e:
        raise PolicyError(e.file, f"document {e.doc}" if e.doc else "-", why=e.why) from None
    return policy_set_from_manifests(manifests)


def policy_set_from_manifests(manifests: Sequence[Manifest]) -> PolicySet:
    """:func:`load_policies` on already-loaded objects (everything that is not a VAP/VAPB is a param)."""
    policies: dict[str, Policy] = {}
    bindings: list[Binding] = []
    params: list[dict[str, Any]] = []
    for m in manifests:
        group, kind = group_kind(m.obj)
        if group != GROUP or kind not in (VAP, VAPB):
            params.append(m.obj)
            continue
        _check_document(m, kind)
        if kind == VAPB:
            bindings.append(_binding(m))
            continue
        p = _policy(m)
        if p.name in policies:
            raise PolicyError(m.file, f"{kind} {p.name}", why=f"defined twice (also in {policies[p.name].file})")
        policies[p.name] = p
    return _assemble(policies, bindings, params=params)


def _check_document(m: Manifest, kind: str) -> None:
    """The version and the fields of one VAP/VAPB: a misspelt field would make a policy check less."""
    where = f"{kind} {m.obj['metadata']['name']}"
    if group_version(m.obj["apiVersion"])[1] != "v1":
        raise PolicyError(m.file, where, why=f"apiVersion {m.obj['apiVersion']} is not supported (use {GROUP}/v1)")
    problems = schema.check(m.obj, schema.TOP, "") + schema.check(
        m.obj.get("spec"), schema.POLICY_SPEC if kind == VAP else schema.BINDING_SPEC, "spec"
    )
    if problems:
        raise PolicyError(m.file, where, why="; ".join(p.lstrip(".") for p in problems))


def _assemble(
    policies: Mapping[str, Policy], bindings: Sequence[Binding], *, params: list[dict[str, Any]]
) -> PolicySet:
    """Bindings grouped by policy (an unbound policy gets an implicit Deny binding), params checked."""
    out = PolicySet(params=params, param_scope=Scope(params))
    seen: set[str] = set()
    for b in bindings:
        if b.name in seen:
            raise PolicyError(b.file, f"{VAPB} {b.name}", why="defined twice")
        seen.add(b.name)
        if b.policy_name not in policies:
            raise PolicyError(
                b.file, f"{VAPB} {b.name}", why=f"spec.policyName: no ValidatingAdmissionPolicy {b.policy_name!r}"
            )
        out.bindings.setdefault(b.policy_name, []).append(b)
    for name in sorted(policies):
        p = policies[name]
        out.policies.append(p)
        if name not in out.bindings:
            out.bindings[name] = [Binding(name, p.file, name, None, None, (ValidationAction.DENY,), implicit=True)]
        out.bindings[name].sort(key=lambda b: b.name)
        for b in out.bindings[name]:
            _check_params(out, p, b)
    return out


class _Compiler:
    """Compiles one policy's expressions; every error names the file, the policy and the expression."""

    def __init__(self, m: Manifest, *, has_params: bool) -> None:
        self.file = m.file
        self.where = f"{VAP} {m.obj['metadata']['name']}"
        self.has_params = has_params

    def fail(self, why: str, expression: str | None = None) -> PolicyError:
        return PolicyError(self.file, self.where, why=why, expression=expression)

    def compile(self, env: Environment, source: Any, *, field_path: str, want: Sequence[Any] = ()) -> Compiled:
        if not isinstance(source, str) or not source.strip():
            raise self.fail(f"{field_path}: required")
        if AUTHORIZER.search(source):
            raise self.fail("authorizer is not supported offline (it needs the cluster's RBAC)", source)
        try:
            return env.compile(source, want)
        except CelError as e:
            raise self.fail(f"{field_path}: {e}", source) from None


def _policy(m: Manifest) -> Policy:
    spec = m.obj.get("spec") or {}
    c = _Compiler(m, has_params=spec.get("paramKind") is not None)
    failure = spec.get("failurePolicy", FailurePolicy.FAIL)
    if failure not in tuple(FailurePolicy):
        raise c.fail(f"spec.failurePolicy: must be Fail or Ignore, not {failure!r}")
    param_kind = _param_kind(spec, c.fail)
    mc = spec.get("matchConstraints")
    if not mc or not mc.get("resourceRules"):
        raise c.fail("spec.matchConstraints.resourceRules: required (which resources the policy applies to)")
    match = _match(mc, "spec.matchConstraints", c.fail)
    if not spec.get("validations") and not spec.get("auditAnnotations"):
        raise c.fail("spec.validations: at least one validation (or auditAnnotation) is required")
    base = Environment(c.has_params)
    conditions = _match_conditions(spec, c, base)
    variables, env = _variables(spec, c, base)
    return Policy(
        m.obj["metadata"]["name"],
        m.file,
        FailurePolicy(failure),
        param_kind,
        match,
        conditions,
        variables,
        _validations(spec, c, env),
        _audit_annotations(spec, c, env),
    )


def _param_kind(spec: Mapping[str, Any], fail: Any) -> tuple[str, str] | None:
    pk = spec.get("paramKind")
    if pk is None:
        return None
    if not pk.get("apiVersion") or not pk.get("kind"):
        raise fail("spec.paramKind: apiVersion and kind are required")
    return (pk["apiVersion"], pk["kind"])


def _match_conditions(spec: Mapping[str, Any], c: _Compiler, env: Environment) -> list[tuple[str, Compiled]]:
    conditions = []
    names: set[str] = set()
    for i, cond in enumerate(spec.get("matchConditions") or []):
        cname = cond.get("name") or ""
        if not cname or cname in names:
            raise c.fail(f"spec.matchConditions[{i}].name: required and unique")
        names.add(cname)
        src = cond.get("expression")
        if isinstance(src, str) and VAR_REF.search(src):
            raise c.fail(f"spec.matchConditions[{i}]: variables are not available in matchConditions", src)
        conditions.append((cname, c.compile(env, src, field_path=f"spec.matchConditions[{i}].expression", want=[BOOL])))
    return conditions


def _variables(
    spec: Mapping[str, Any], c: _Compiler, base: Environment
) -> tuple[list[tuple[str, Compiled]], Environment]:
    """The compiled variables, and the environment that declares them all (each variable sees
    only the ones before it, as on the apiserver)."""
    variables: list[tuple[str, Compiled]] = []
    types: dict[str, Any] = {}
    env = base
    for i, v in enumerate(spec.get("variables") or []):
        vname = v.get("name") or ""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", vname) or vname in types:
            raise c.fail(f"spec.variables[{i}].name: {vname!r} must be a unique CEL identifier")
        compiled = c.compile(env, v.get("expression"), field_path=f"spec.variables[{i}].expression")
        variables.append((vname, compiled))
        types[vname] = compiled.return_type
        env = Environment(c.has_params, types)
    return variables, env


def _validations(spec: Mapping[str, Any], c: _Compiler, env: Environment) -> list[Validation]:
    validations = []
    for i, v in enumerate(spec.get("validations") or []):
        at = f"spec.validations[{i}]"
        expr = c.compile(env, v.get("expression"), field_path=f"{at}.expression", want=[BOOL])
        msg_expr = None
        if v.get("messageExpression"):
            msg_expr = c.compile(env, v["messageExpression"], field_path=f"{at}.messageExpression", want=[STRING])
        reason = v.get("reason", Reason.INVALID)
        if reason not in REASONS:
            raise c.fail(f"{at}.reason: must be one of {', '.join(REASONS)}")
        message = v.get("message", "")
        if "\n" in message.strip():
            raise c.fail(f"{at}.message: must not contain line breaks")
        validations.append(Validation(expr, message, msg_expr, Reason(reason)))
    return validations


def _audit_annotations(spec: Mapping[str, Any], c: _Compiler, env: Environment) -> list[tuple[str, Compiled]]:
    return [
        (
            a.get("key", ""),
            c.compile(
                env,
                a.get("valueExpression"),
                field_path=f"spec.auditAnnotations[{i}].valueExpression",
                want=[STRING, NULL],
            ),
        )
        for i, a in enumerate(spec.get("auditAnnotations") or [])
    ]


def _binding(m: Manifest) -> Binding:
    name = m.obj["metadata"]["name"]
    spec = m.obj.get("spec") or {}

    def fail(why: str) -> PolicyError:
        return PolicyError(m.file, f"{VAPB} {name}", why=why)

    policy_name = spec.get("policyName")
    if not policy_name:
        raise fail("spec.policyName: required")
    actions = tuple(spec.get("validationActions") or ())
    if not actions:
        raise fail("spec.validationActions: required (Deny, Warn and/or Audit)")
    if len(set(actions)) != len(actions) or any(a not in ACTIONS for a in actions):
        raise fail(f"spec.validationActions: {list(actions)}: each of Deny, Warn, Audit at most once")
    if ValidationAction.DENY in actions and ValidationAction.WARN in actions:
        raise fail("spec.validationActions: Deny and Warn may not be used together")
    ref = spec.get("paramRef")
    param_ref = None
    if ref is not None:
        if bool(ref.get("name")) == ("selector" in ref):
            raise fail("spec.paramRef: exactly one of name and selector")
        not_found = ref.get("parameterNotFoundAction")
        if not_found not in tuple(ParamNotFound):
            raise fail("spec.paramRef.parameterNotFoundAction: required, Allow or Deny")
        selector = _selector(ref["selector"], "spec.paramRef.selector", fail) if "selector" in ref else None
        param_ref = ParamRef(ref.get("name", ""), ref.get("namespace", ""), selector, ParamNotFound(not_found))
    mr = spec.get("matchResources")
    match = _match(mr, "spec.matchResources", fail) if mr is not None else None
    return Binding(name, m.file, policy_name, param_ref, match, tuple(ValidationAction(a) for a in actions))


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
    if scope not in tuple(RuleScope):
        raise fail(f"{path}.scope: must be *, Cluster or Namespaced")
    return Rule(
        tuple(spec["apiGroups"]),
        tuple(spec["apiVersions"]),
        tuple(spec["resources"]),
        tuple(spec["operations"]),
        RuleScope(scope),
        tuple(spec.get("resourceNames") or ()),
    )


# The Kubernetes LabelSelector words, as the one selector matcher (render/selectors) spells them.
_OPERATORS = {
    SelectorOperator.IN: Operator.IN,
    SelectorOperator.NOT_IN: Operator.NOT_IN,
    SelectorOperator.EXISTS: Operator.EXISTS,
    SelectorOperator.DOES_NOT_EXIST: Operator.NOT_EXISTS,
}


def _selector(spec: Mapping[str, Any], path: str, fail: Any) -> Selector:
    reqs = [Requirement(k, Operator.IN, frozenset([v])) for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for i, e in enumerate(spec.get("matchExpressions") or []):
        op, values = e.get("operator"), tuple(e.get("values") or ())
        if not e.get("key") or op not in tuple(SelectorOperator):
            raise fail(f"{path}.matchExpressions[{i}]: needs a key and operator In, NotIn, Exists or DoesNotExist")
        if (op in (SelectorOperator.IN, SelectorOperator.NOT_IN)) != bool(values):
            raise fail(f"{path}.matchExpressions[{i}].values: required for In/NotIn, forbidden otherwise")
        reqs.append(Requirement(e["key"], _OPERATORS[SelectorOperator(op)], frozenset(values)))
    return tuple(reqs)


def _check_params(ps: PolicySet, p: Policy, b: Binding) -> None:
    """Fail closed on a param that can be looked up now (fixed name and namespace) and is missing."""
    if p.param_kind is None or b.param_ref is None:
        return
    ref = b.param_ref
    namespaced = not ps.param_scope.cluster_scoped({"apiVersion": p.param_kind[0], "kind": p.param_kind[1]})
    if not namespaced and ref.namespace:
        raise PolicyError(
            b.file, f"{VAPB} {b.name}", why="spec.paramRef.namespace: must be empty for a cluster-scoped paramKind"
        )
    if ref.name and (ref.namespace or not namespaced) and not params_for(ps, p, ref=ref, namespace=ref.namespace):
        what = f"{p.param_kind[1]} {ref.namespace + '/' if ref.namespace else ''}{ref.name}"
        raise PolicyError(b.file, f"{VAPB} {b.name}", why=f"spec.paramRef: param {what} ({p.param_kind[0]}) not found")


def params_for(ps: PolicySet, p: Policy, *, ref: ParamRef, namespace: str) -> list[dict[str, Any]]:
    """The params of ``p``'s paramKind that ``ref`` selects in ``namespace`` ("" = any), in file order."""
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
        if ref.selector is not None and not selects(ref.selector, md.get("labels") or {}):
            continue
        out.append(obj)
    return out
