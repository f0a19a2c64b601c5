"""``reconciler check``: render a path and judge it with the policies, offline, for pre-merge CI.

The same engine gates every sync, so a green ``check`` on a pull request means the sync of
that commit will not be refused by policy.  Exit codes follow the other commands: 0 no Deny
violation (warnings may be printed), 1 at least one Deny violation, 2 an error (a policy or
manifest that cannot be loaded; the message names the file, the policy and the expression).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path

from reconciler.policy.evaluation import evaluate, object_ref
from reconciler.policy.loading import load_policies
from reconciler.policy.model import PolicyError, PolicySet, ValidationAction, Violation
from reconciler.render.build import render
from reconciler.render.decryption import Decryption
from reconciler.render.errors import ManifestError
from reconciler.render.manifests import Manifest
from reconciler.render.namespaces import Scope
from reconciler.render.options import RenderOptions
from reconciler.report import table

__all__ = ["EXIT_DENIED", "EXIT_ERROR", "EXIT_OK", "OUTPUTS", "check", "evaluate", "load_policies"]

EXIT_OK, EXIT_DENIED, EXIT_ERROR = 0, 1, 2


class Output(StrEnum):
    """``reconciler check -o``: what CI reads."""

    TABLE = "table"  # aligned columns for a person
    JSON = "json"  # one document for a script
    JUNIT = "junit"  # a test report CI systems show per object x policy


OUTPUTS = tuple(o.value for o in Output)  # plain strings: click.Choice would show an Enum by its names
COLUMNS = ("POLICY", "ACTION", "OBJECT", "MESSAGE")


def check(
    path: Path,
    *,
    policies: Path,
    output: str,
    substitute: Mapping[str, str] | None = None,
    target_namespace: str | None = None,
    decryption: Decryption | None = None,
) -> tuple[str, int]:
    """The text to print and the exit code for ``reconciler check PATH --policies DIR -o OUTPUT``.

    ``path`` is rendered as a sync would render it (kustomize, ``${VAR}`` substitution with
    ``substitute`` when it is not None, ``targetNamespace``); the repository root is the enclosing git work tree,
    so an overlay may refer to ``../base``. SOPS files are decrypted with ``decryption`` (default
    None: an encrypted file is a render error), so that encrypted Secrets are judged as such.
    """
    if output not in OUTPUTS:
        return _error(Output.TABLE, f"unknown output {output!r} (use table, json or junit)")
    try:
        policy_set = load_policies(policies)
    except PolicyError as e:
        return _error(output, f"policy: {e}")
    try:
        root, sub = checkout_root(Path(path))
        opts = RenderOptions(
            substitute=None if substitute is None else dict(substitute),
            target_namespace=target_namespace,
            decryption=decryption,
        )
        manifests = render(root, sub, opts)
    except ManifestError as e:  # RenderError is a ManifestError
        return _error(output, f"render: {e}")
    violations = evaluate(manifests, policy_set)
    code = EXIT_DENIED if any(v.action == ValidationAction.DENY for v in violations) else EXIT_OK
    if output == Output.JSON:
        return format_json(manifests, policy_set, violations), code
    if output == Output.JUNIT:
        return format_junit(manifests, policy_set, violations), code
    return format_table(manifests, policy_set, violations), code


def checkout_root(path: Path) -> tuple[Path, str]:
    """The git work tree ``path`` is in and the path inside it (outside git: the path itself)."""
    path = path.resolve()
    for parent in (path, *path.parents):
        if (parent / ".git").exists():
            return parent, str(path.relative_to(parent)) or "."
    return (path, ".") if path.is_dir() else (path.parent, path.name)


def _summary(manifests: Sequence[Manifest], ps: PolicySet, violations: Sequence[Violation]) -> str:
    deny = sum(v.action == ValidationAction.DENY for v in violations)
    other = len(violations) - deny
    return f"{len(manifests)} objects, {len(ps.policies)} policies: {deny} denied, {other} warned/audited" + (
        "" if deny else " - passed"
    )


def format_table(manifests: Sequence[Manifest], ps: PolicySet, violations: Sequence[Violation]) -> str:
    """Aligned columns POLICY, ACTION, OBJECT, MESSAGE (the message last, unpadded), then a summary."""
    rows = [(v.policy, v.action, v.object, f"{v.message} ({v.file})") for v in violations]
    head = table.aligned(COLUMNS, rows) if violations else ""
    return head + _summary(manifests, ps, violations) + "\n"


def format_json(manifests: Sequence[Manifest], ps: PolicySet, violations: Sequence[Violation]) -> str:
    doc = {
        "objects": len(manifests),
        "policies": [p.name for p in ps.policies],
        "denied": sum(v.action == ValidationAction.DENY for v in violations),
        "violations": [
            {
                "policy": v.policy,
                "binding": v.binding,
                "action": v.action,
                "object": v.object,
                "file": v.file,
                "message": v.message,
                "reason": v.reason,
            }
            for v in violations
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def format_junit(manifests: Sequence[Manifest], ps: PolicySet, violations: Sequence[Violation]) -> str:
    """One testcase per object x policy (classname: the object, name: the policy): a Deny is a
    failure, a Warn/Audit is printed in the testcase's system-out, so CI shows both."""
    scope = Scope(m.obj for m in manifests)
    by_case: dict[tuple[str, str], list[Violation]] = {}
    for v in violations:
        by_case.setdefault((v.object, v.policy), []).append(v)
    suites = ET.Element("testsuites", name="reconciler check")
    suite = ET.SubElement(suites, "testsuite", name="policies")
    tests = failures = 0
    for m in manifests:
        md = m.obj["metadata"]
        ns = "" if scope.cluster_scoped(m.obj) else (md.get("namespace") or "default")
        ref = object_ref(m.obj, ns)
        for p in ps.policies:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=ref, name=p.name, file=m.file)
            found = by_case.get((ref, p.name), [])
            denies = [v for v in found if v.action == ValidationAction.DENY]
            if denies:
                failures += 1
                failure = ET.SubElement(case, "failure", message=denies[0].message, type="Deny")
                failure.text = "\n".join(f"{v.binding}: {v.message}" for v in denies)
            others = [v for v in found if v.action != ValidationAction.DENY]
            if others:
                ET.SubElement(case, "system-out").text = "\n".join(
                    f"{v.action} {v.binding}: {v.message}" for v in others
                )
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suites.set("tests", str(tests))
    suites.set("failures", str(failures))
    suites.set("errors", "0")
    return _xml(suites)


def _xml(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _error(output: str, message: str) -> tuple[str, int]:
    if output == Output.JSON:
        return json.dumps({"error": message}, indent=2) + "\n", EXIT_ERROR
    if output == Output.JUNIT:
        suites = ET.Element("testsuites", name="reconciler check", tests="1", failures="0", errors="1")
        suite = ET.SubElement(suites, "testsuite", name="policies", tests="1", failures="0", errors="1")
        case = ET.SubElement(suite, "testcase", classname="reconciler", name="load")
        ET.SubElement(case, "error", message=message).text = message
        return _xml(suites), EXIT_ERROR
    return f"error: {message}\n", EXIT_ERROR
