"""Judging rendered objects against a loaded policy set, as the apiserver would at CREATE.

Matching, params, match conditions, variables, validations, failure policy and messages follow
k8s.io/apiserver's validating admission policy plugin word for word (see model.py).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from reconciler.policy.celenv import (
    EvalError,
    activation,
)
from reconciler.policy.loading import params_for
from reconciler.policy.model import (
    MAX_MESSAGE_BYTES,
    VAR_REF,
    Binding,
    FailurePolicy,
    ParamNotFound,
    Policy,
    PolicySet,
    Reason,
    Request,
    Validation,
    ValidationAction,
    Violation,
)
from reconciler.policy.resources import Resources
from reconciler.render.manifests import Manifest
from reconciler.render.namespaces import Scope, group_kind
from reconciler.render.selectors import group_version

_MISSING = object()


class _Context:
    """Per render: scope, plurals, and the Namespace objects (the apiserver labels each
    with ``kubernetes.io/metadata.name``, so we do too)."""

    def __init__(self, manifests: Sequence[Manifest], *, default_namespace: str) -> None:
        self.default_namespace = default_namespace
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
        namespace = "" if cluster else (md.get("namespace") or self.default_namespace)
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


def evaluate(
    manifests: Sequence[Manifest], policy_set: PolicySet, *, default_namespace: str = "default"
) -> list[Violation]:
    """Every violation of every object in ``manifests`` (one render), in object then policy order.

    A namespaced object that names no namespace is judged in ``default_namespace`` (default
    "default"): the namespace the sync will apply it to, so bindings that select namespaces
    and messages see what the apiserver will.

    Deny violations block a sync (in enforce mode); Warn and Audit ones are reported.
    Never raises for a policy problem at run time: an expression error becomes a
    violation according to the policy's ``failurePolicy``, as on the apiserver.
    """
    ctx = _Context(manifests, default_namespace=default_namespace)
    out: list[Violation] = []
    for m in manifests:
        req, obj = ctx.request(marked(m.obj, decrypted=m.decrypted))
        ref = object_ref(obj, req.namespace)
        for p in policy_set.policies:
            if not p.match.matches(req):
                continue
            subject = _Subject(req, ref, m.file)
            for b in policy_set.bindings.get(p.name, ()):
                found = _evaluate_binding(policy_set, p, binding=b, subject=subject)
                if found and (req.group, req.kind) == ("", "Secret"):
                    found = [_scrub(x, obj) for x in found]
                out.extend(found)
    return out


DECRYPTED = "gitops.reconciler.dev/decrypted"  # "sops" on what the render decrypted; seen by policies only


def marked(obj: dict[str, Any], *, decrypted: bool) -> dict[str, Any]:
    """``obj`` as the policies see it: with ``DECRYPTED: sops`` when it came out of SOPS decryption,
    without that annotation otherwise, so that writing it in git cannot pass for encryption (the
    ``plain-secrets`` policy accepts only what was encrypted). Never applied: a copy, for judging."""
    md = obj.get("metadata") or {}
    annotations = dict(md.get("annotations") or {})
    if decrypted:
        annotations[DECRYPTED] = "sops"
    elif DECRYPTED not in annotations:
        return obj
    else:
        del annotations[DECRYPTED]
    meta = {**md, "annotations": annotations} if annotations else {k: v for k, v in md.items() if k != "annotations"}
    return {**obj, "metadata": meta}


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


class _Verdict(StrEnum):
    """How a failed check turns into violations."""

    DENY = "deny"  # one violation per action of the binding's validationActions
    CONFIG = "config"  # a Deny whatever the actions are (an audit annotation that cannot be written)


class _Decision(NamedTuple):
    verdict: _Verdict
    message: str
    reason: str  # "" = the default, Invalid


@dataclass(frozen=True)
class _Subject:
    """One object of the render, as the evaluation of a binding needs it."""

    req: Request
    ref: str  # Kind/namespace/name
    file: str


def _evaluate_binding(ps: PolicySet, p: Policy, *, binding: Binding, subject: _Subject) -> Iterable[Violation]:
    b, req = binding, subject.req
    if b.match is not None and not b.match.matches(req):
        return []
    params = _binding_params(ps, p, binding=b, req=req)
    if isinstance(params, str):
        if p.failure_policy == FailurePolicy.IGNORE:
            return []
        why = f"failed to configure binding: {params}"
        return [Violation(p.name, b.name, ValidationAction.DENY, subject.ref, subject.file, why)]
    out: list[Violation] = []
    for param in params:
        for verdict, message, reason in _decisions(p, req, param=param):
            actions = (ValidationAction.DENY,) if verdict == _Verdict.CONFIG else b.actions
            reason_ = Reason(reason or Reason.INVALID)
            out.extend(Violation(p.name, b.name, a, subject.ref, subject.file, message, reason_) for a in actions)
    return out


def _binding_params(ps: PolicySet, p: Policy, *, binding: Binding, req: Request) -> list[dict[str, Any] | None] | str:
    """The params to evaluate ``p`` with for ``req`` ([None] without a paramKind), or why the
    binding cannot be configured for this object."""
    r = binding.param_ref
    if p.param_kind is None or r is None:
        return [None]
    namespaced = not ps.param_scope.cluster_scoped({"apiVersion": p.param_kind[0], "kind": p.param_kind[1]})
    namespace = r.namespace or (req.namespace if namespaced else "")
    if namespaced and not namespace:
        return "cannot use namespaced paramRef in policy binding that matches cluster-scoped resources"
    found: list[dict[str, Any] | None] = list(params_for(ps, p, ref=r, namespace=namespace))
    if not found and r.not_found == ParamNotFound.DENY:
        return "no params found for policy binding with `Deny` parameterNotFoundAction"
    return found


class _Activations:
    """The CEL activations of one policy on one object with one param.

    Building an activation converts every value in it, the object above all: each stage gets
    only the names its expressions read, and activations without variables are shared by the
    policies of one object."""

    def __init__(self, p: Policy, req: Request, param: dict[str, Any] | None) -> None:
        self.req = req
        self.data = dict(req.data())
        has_params = p.param_kind is not None
        if has_params:
            self.data["params"] = param
        self.key = (id(param) if has_params else None, has_params)

    def for_refs(self, refs: frozenset[str]) -> Any:
        sub = {k: self.data[k] for k in refs if k in self.data}
        if any(k.startswith("variables.") for k in refs):
            return activation(sub)
        return self.req.activation((*self.key, self.data["namespaceObject"] is not None, refs), sub)


def _decisions(p: Policy, req: Request, *, param: dict[str, Any] | None) -> list[_Decision]:
    """One decision for each failed check, in the apiserver's order: match conditions, then
    validations, then audit annotations."""
    acts = _Activations(p, req, param)
    if p.match_conditions:
        early = _match_conditions(p, req, acts)
        if early is not None:
            return early
    acts.data["namespaceObject"] = req.ns_object
    failed_vars = _variables(p, req, acts)
    act = acts.for_refs(p.validation_refs)
    return _validations(p, act, failed_vars) + _audit_annotations(p, act, failed_vars)


def _match_conditions(p: Policy, req: Request, acts: _Activations) -> list[_Decision] | None:
    """None when every condition holds; otherwise the decisions (none: the policy does not apply)."""
    errors = []
    act = None
    for _name, cond in p.match_conditions:
        # The same condition in several policies (not-owned-pod) is evaluated once per object.
        ckey = ("condition", cond.source, *(acts.key if "params" in cond.refs else ()))
        r = req.variables.get(ckey, _MISSING)
        if r is _MISSING:
            act = act or acts.for_refs(p.condition_refs)
            r = req.variables[ckey] = cond.evaluate(act)
        if isinstance(r, EvalError):
            errors.append(f"expression '{cond.source}' resulted in error: {r.message}")
        elif r is False:
            return []
    if not errors:
        return None
    if p.failure_policy != FailurePolicy.FAIL:
        return []
    msg = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return [_Decision(_Verdict.DENY, msg, "")]


def _variables(p: Policy, req: Request, acts: _Activations) -> dict[str, str]:
    """Evaluate the variables into ``acts.data``; returns the error of each one that failed."""
    failed_vars: dict[str, str] = {}
    chain: tuple[Any, ...] = acts.key
    for vname, vexpr in p.variables:
        # Policies often share their first variables (podSpec, containers): a variable whose
        # definition and predecessors are the same has the same value, so evaluate it once per object.
        chain = (*chain, vname, vexpr.source)
        r = req.variables.get(chain, _MISSING)
        if r is _MISSING:
            r = req.variables[chain] = vexpr.evaluate(acts.for_refs(vexpr.refs))
        if isinstance(r, EvalError):
            inner = failed_vars.get(_first_failed(vexpr.source, failed_vars) or "", r.message)
            failed_vars[vname] = inner
        else:
            acts.data[f"variables.{vname}"] = r
    return failed_vars


def _validations(p: Policy, act: Any, failed_vars: Mapping[str, str]) -> list[_Decision]:
    out: list[_Decision] = []
    for v in p.validations:
        r = v.expression.evaluate(act)
        if isinstance(r, EvalError):
            if p.failure_policy == FailurePolicy.FAIL:
                out.append(_Decision(_Verdict.DENY, _error_message(v.expression.source, r.message, failed_vars), ""))
        elif r is not True:
            out.append(_Decision(_Verdict.DENY, _validation_message(v, act), v.reason))
    return out


def _validation_message(v: Validation, act: Any) -> str:
    """messageExpression if it yields a usable one-line string, else message, else the expression."""
    if v.message_expression is not None:
        mr = v.message_expression.evaluate(act)
        if isinstance(mr, str):
            message = mr.strip()
            if message and len(message.encode()) <= MAX_MESSAGE_BYTES and "\n" not in message:
                return message
    if v.message and v.message.strip():
        return v.message.strip()
    return f"failed expression: {v.expression.source.strip()}"


def _audit_annotations(p: Policy, act: Any, failed_vars: Mapping[str, str]) -> list[_Decision]:
    if p.failure_policy != FailurePolicy.FAIL:
        return []  # under Ignore an annotation error is ignored, and we write no audit records
    out: list[_Decision] = []
    for _key, aexpr in p.audit_annotations:
        r = aexpr.evaluate(act)
        if isinstance(r, EvalError):
            out.append(_Decision(_Verdict.CONFIG, _error_message(aexpr.source, r.message, failed_vars), ""))
        elif r is not None and not isinstance(r, str):
            msg = (
                f"valueExpression '{aexpr.source}' resulted in unsupported return type: {type(r).__name__}. "
                "Return type must be either string or null."
            )
            out.append(_Decision(_Verdict.CONFIG, msg, ""))
    return out


def _first_failed(source: str, failed: Mapping[str, str]) -> str | None:
    return next((n for n in VAR_REF.findall(source) if n in failed), None)


def _error_message(source: str, message: str, failed_vars: Mapping[str, str]) -> str:
    bad = _first_failed(source, failed_vars)
    if bad is not None:
        message = f'composited variable "{bad}" fails to evaluate: {failed_vars[bad]}'
    return f"expression '{source}' resulted in error: {message}"
