"""Judging rendered objects against a loaded policy set, as the apiserver would at CREATE.

Matching, params, match conditions, variables, validations, failure policy and messages follow
k8s.io/apiserver's validating admission policy plugin word for word (see model.py).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.policy.celenv import (
    EvalError,
    activation,
)
from reconciler.policy.loading import params_for
from reconciler.policy.model import (
    MAX_MESSAGE_BYTES,
    VAR_REF,
    Binding,
    Policy,
    PolicySet,
    Request,
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
        found: list[dict[str, Any] | None] = list(params_for(ps, p, r, namespace))
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
    return next((n for n in VAR_REF.findall(source) if n in failed), None)


def _error_message(source: str, message: str, failed_vars: Mapping[str, str]) -> str:
    bad = _first_failed(source, failed_vars)
    if bad is not None:
        message = f'composited variable "{bad}" fails to evaluate: {failed_vars[bad]}'
    return f"expression '{source}' resulted in error: {message}"
