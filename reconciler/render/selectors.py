"""Patch targets: which objects a GitSync patch applies to, with kustomize's semantics.

Users copy targets between Flux, kustomize and us, so a target must select exactly what
kustomize would: group, version, kind, name and namespace are RE2 regular expressions (Go's
dialect, see ``patterns``) anchored at both ends (``name: web-.*``), an empty field matches everything, an object
without a namespace is in the "default" namespace for matching, and a cluster-scoped
object is in no namespace a selector can name.  Label and annotation selectors use the
Kubernetes syntax (``a=b,c!=d,e in (x,y),f notin (z),g,!h``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.render import patterns
from reconciler.render.patterns import Pattern

# kustomize's stand-in namespace for cluster-scoped objects (resid.TotallyNotANamespace).
CLUSTER_SCOPED_NAMESPACE = "~X"

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
# Matched against stripped terms: a leading ``\s*`` next to another would backtrack in
# quadratic time over a selector of blanks (seconds for 8 KiB, hours for a megabyte).
_SET_RE = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^)]*)\)")
_CMP_RE = re.compile(rf"({_KEY})\s*(==|!=|=)\s*({_VALUE})")
_EXISTS_RE = re.compile(rf"(!?)\s*({_KEY})")


class Operator(StrEnum):
    """A label selector requirement's operator, as kustomize's selector parser names it."""

    IN = "in"  # key=value, key==value, key in (a,b)
    NOT_IN = "notin"  # key!=value, key notin (a,b): also matches objects without the key
    EXISTS = "exists"  # key
    NOT_EXISTS = "!exists"  # !key


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Operator
    values: frozenset[str]

    def matches(self, labels: Mapping[str, Any]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        text = value if isinstance(value, str) else ("" if value is None else str(value))
        if self.op == Operator.EXISTS:
            return present
        if self.op == Operator.NOT_EXISTS:
            return not present
        if self.op == Operator.IN:
            return present and text in self.values
        return not present or text not in self.values  # notin (and !=) match objects without the key


def _split_terms(selector: str) -> list[str]:
    """Split on the commas that are not inside ``(...)``."""
    terms: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return terms


def parse_selector(selector: str, field: str) -> tuple[Requirement, ...]:
    """The requirements of a label selector string; ValueError naming ``field`` if it is malformed."""
    if not selector.strip():
        return ()
    size = len(selector.encode("utf-8"))
    if size > patterns.MAX_PATTERN_BYTES:
        raise ValueError(f"{field}: selector is {size} bytes, over the limit of {patterns.MAX_PATTERN_BYTES}")
    out = []
    for raw in _split_terms(selector):
        term = raw.strip()
        if m := _SET_RE.fullmatch(term):
            values = frozenset(v.strip() for v in m[3].split(",") if v.strip())
            if not values:
                raise ValueError(f"{field}: {term.strip()!r} needs at least one value in (...)")
            out.append(Requirement(m[1], Operator(m[2]), values))
        elif m := _CMP_RE.fullmatch(term):
            out.append(Requirement(m[1], Operator.NOT_IN if m[2] == "!=" else Operator.IN, frozenset([m[3]])))
        elif m := _EXISTS_RE.fullmatch(term):
            out.append(Requirement(m[2], Operator.NOT_EXISTS if m[1] else Operator.EXISTS, frozenset()))
        else:
            raise ValueError(
                f"{field}: cannot parse {term.strip()!r} (expected key=value, key!=value, "
                "key in (a,b), key notin (a,b), key or !key)"
            )
    return tuple(out)


def _anchored(pattern: str, field: str) -> Pattern | None:
    return patterns.anchored(pattern, field=field) if pattern else None


def group_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ("apps", "v1"); ``v1`` -> ("", "v1")."""
    group, _, version = api_version.rpartition("/")
    return group, version


@dataclass(frozen=True)
class Target:
    group: Pattern | None
    version: Pattern | None
    kind: Pattern | None
    name: Pattern | None
    namespace: Pattern | None
    labels: tuple[Requirement, ...]
    annotations: tuple[Requirement, ...]

    @classmethod
    def parse(cls, spec: Mapping[str, str]) -> Target:
        """A Target from the ``target`` mapping; ValueError naming ``target.<field>`` if invalid."""
        return cls(
            group=_anchored(spec.get("group", ""), "target.group"),
            version=_anchored(spec.get("version", ""), "target.version"),
            kind=_anchored(spec.get("kind", ""), "target.kind"),
            name=_anchored(spec.get("name", ""), "target.name"),
            namespace=_anchored(spec.get("namespace", ""), "target.namespace"),
            labels=parse_selector(spec.get("labelSelector", ""), "target.labelSelector"),
            annotations=parse_selector(spec.get("annotationSelector", ""), "target.annotationSelector"),
        )

    def matches(self, obj: Mapping[str, Any], cluster_scoped: bool) -> bool:
        """Whether kustomize would select ``obj`` with this target."""
        group, version = group_version(str(obj.get("apiVersion", "")))
        md = obj.get("metadata") or {}
        if self.namespace is not None:
            ns = CLUSTER_SCOPED_NAMESPACE if cluster_scoped else (md.get("namespace") or "default")
            if not self.namespace.matches(ns):
                return False
        if self.name is not None and not self.name.matches(str(md.get("name", ""))):
            return False
        for pattern, value in ((self.group, group), (self.version, version), (self.kind, str(obj.get("kind", "")))):
            if pattern is not None and not pattern.matches(value):
                return False
        labels = v if isinstance(v := md.get("labels"), dict) else {}
        annotations = v if isinstance(v := md.get("annotations"), dict) else {}
        return all(r.matches(labels) for r in self.labels) and all(r.matches(annotations) for r in self.annotations)
