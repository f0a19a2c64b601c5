"""``${VAR}`` substitution in rendered objects, with Flux ``postBuild`` semantics.

Choice: like Flux, each rendered object is serialised to YAML, variables are replaced in
that **text**, and the text is parsed again (with the same guards as a file).  So the
result is typed the way Flux users expect: ``replicas: ${REPLICAS}`` with ``REPLICAS=3``
becomes the integer 3, ``enabled: ${ON}`` with ``ON=true`` a boolean.  The price, also as
in Flux: quotes around a variable in the source do not survive (kustomize drops them
before Flux substitutes, and we serialise from parsed data), so a string field that must
receive a number needs the Flux idiom ``id: ${quote}${ID}${quote}`` with ``quote: '"'``.
A value is inserted as YAML text: a value containing YAML syntax (``: ``, a newline,
``#``) can change the structure of the object; the re-parse then fails with an error,
or, as in Flux, the object says what the value says.

Syntax (a subset of Flux's, refusing the rest loudly rather than guessing):

* ``${NAME}`` - the value; NAME matches ``[_A-Za-z][_A-Za-z0-9]*``.  Undefined -> error.
* ``${NAME:=default}`` (or ``${NAME:-default}``) - the value, or ``default`` when NAME is
  undefined or empty.  The default ends at the first ``}``.
* ``$${NAME}`` - the literal text ``${NAME}`` (an escape for scripts and dashboards).
* ``$NAME`` and a lone ``$`` are left alone; any other ``${...}`` form is an error.

Substitution runs only when asked for, as in Flux (``spec.postBuild`` present there): a
GitSync with ``substitute`` or ``substituteFrom`` (even an empty one), a CLI call with
``--substitute`` or ``--substitute-from``.  Without that, ``${...}`` is data and every object
is applied verbatim: CRD descriptions, shell scripts in ConfigMaps and Grafana dashboards
of public repositories come through as written.

Once asked for, it is strict, unlike Flux (which skips substitution when no variable is
defined and, without a feature gate, expands an undefined variable to ""): a forgotten
``substituteFrom`` entry must fail the render, not deploy a literal ``${CLUSTER_NAME}`` or
an empty value.  Text that must keep ``${...}`` escapes it as ``$${...}``, or its object is
annotated or labelled ``gitops.reconciler.dev/substitute: disabled`` (or Flux's
``kustomize.toolkit.fluxcd.io/substitute: disabled``, so migrated repositories keep
working) and is left alone.

Values of Secret-sourced variables never appear in an error: messages name variables,
never values, and a parse error after substituting a Secret value withholds its details.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import yaml

from reconciler.render import yaml_safe
from reconciler.render.errors import ManifestError, RenderError, describe
from reconciler.render.manifests import Manifest, check_object
from reconciler.render.options import Limits

DISABLE_KEY = "gitops.reconciler.dev/substitute"
FLUX_DISABLE_KEY = "kustomize.toolkit.fluxcd.io/substitute"  # Flux's opt-out, accepted as an alias
DISABLE_KEYS = (DISABLE_KEY, FLUX_DISABLE_KEY)
_TOKEN = re.compile(r"\$\$\{|\$\{")
_EXPR = re.compile(r"([_A-Za-z][_A-Za-z0-9]*)(?:(:=|:-)(.*))?", re.S)


class SubstitutionError(ValueError):
    """A variable reference that cannot be expanded; ``expression`` is its text in the object."""

    def __init__(self, why: str, expression: str, variable: str | None = None) -> None:
        self.why, self.expression, self.variable = why, expression, variable
        super().__init__(why)


def substitute_text(text: str, variables: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with every reference expanded, and the names used (in order, without repeats)."""
    out: list[str] = []
    used: list[str] = []
    pos = 0
    while m := _TOKEN.search(text, pos):
        out.append(text[pos : m.start()])
        if m.group() == "$${":
            out.append("${")
            pos = m.end()
            continue
        end = text.find("}", m.end())
        if end < 0:
            snippet = text[m.start() : m.start() + 40].split("\n")[0]
            raise SubstitutionError(f"unterminated variable reference {snippet!r} (escape a literal one as $${{)", "${")
        expression = text[m.start() : end + 1]
        e = _EXPR.fullmatch(text[m.end() : end])
        if e is None:
            raise SubstitutionError(
                f"unsupported variable reference {expression!r}: only ${{NAME}} and ${{NAME:=default}} are "
                "supported (escape a literal one as $${...})",
                expression,
            )
        name, has_default, default = e[1], e[2] is not None, e[3] or ""
        value = variables.get(name)
        if value is None or (value == "" and has_default):
            if not has_default:
                raise SubstitutionError(
                    f"variable ${{{name}}} is not defined and has no default (define it in substitute or "
                    f"substituteFrom, write ${{{name}:=default}}, or escape it as $${{{name}}})",
                    expression,
                    name,
                )
            value = default
        if name not in used:
            used.append(name)
        out.append(value)
        pos = end + 1
    out.append(text[pos:])
    return "".join(out), used


def _has_dollar(value: Any) -> bool:
    if isinstance(value, str):
        return "$" in value
    if isinstance(value, dict):
        return any(_has_dollar(k) or _has_dollar(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_dollar(v) for v in value)
    return False


def find_field(value: Any, needle: str, path: str = "") -> str | None:
    """The dotted path of the first key or string value containing ``needle`` (for error messages)."""
    if isinstance(value, str):
        return path or "." if needle in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and needle in k:
                return f"{sub} (a key)"
            if found := find_field(v, needle, sub):
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if found := find_field(v, needle, f"{path}[{i}]"):
                return found
    return None


def disabled(obj: Mapping[str, Any]) -> bool:
    """Whether the object opted out with either key, as an annotation or a label (as Flux reads it)."""
    md = obj.get("metadata") or {}
    return any(
        (md.get(where) or {}).get(key) == "disabled" for where in ("annotations", "labels") for key in DISABLE_KEYS
    )


def substitute_manifest(
    m: Manifest, variables: Mapping[str, str], *, secret_vars: frozenset[str], limits: Limits
) -> Manifest:
    """``m`` with its variables expanded (see the module docstring); RenderError naming object and variable."""
    if disabled(m.obj) or not _has_dollar(m.obj):
        return m
    text = yaml_safe.dump(m.obj)
    try:
        new, used = substitute_text(text, variables)
    except SubstitutionError as e:
        field = find_field(m.obj, e.expression)
        raise _blame(m, e.why + (f" (field {field})" if field else "")) from None
    if new == text:
        return m
    names = ", ".join(f"${{{n}}}" for n in used)
    secret_used = [n for n in used if n in secret_vars]
    if len(new) > limits.max_file_bytes:
        raise _blame(m, f"substituting {names} makes the object larger than {limits.max_file_bytes} bytes")
    try:
        docs = yaml_safe.load_all(new, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes)
        if len(docs) != 1:
            raise ValueError("a value contains a YAML document separator")
        obj = check_object(docs[0], m.file, m.doc)
    except (yaml.YAMLError, yaml_safe.YAMLLimitError, ValueError) as e:
        if secret_used:
            detail = f"details withheld because {', '.join(f'${{{n}}}' for n in secret_used)} comes from a Secret"
        elif isinstance(e, ManifestError):
            detail = e.why
        else:
            mark = getattr(e, "problem_mark", None)
            at = f"line {mark.line + 1} of the substituted object: " if mark is not None else ""
            detail = at + str(getattr(e, "problem", None) or getattr(e, "why", None) or e)
        raise _blame(
            m,
            f"substituting {names} did not give a valid object ({detail}); values are inserted as YAML text, "
            "so a value with YAML syntax (': ', '#', a newline, brackets) changes the structure",
        ) from None
    return replace(m, obj=obj)


def _blame(m: Manifest, why: str) -> RenderError:
    return RenderError.about(describe(m.obj), file=m.file, doc=m.doc, why=why)
