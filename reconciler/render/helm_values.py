"""Chart values merged in Flux HelmRelease's order, as a pure function.

Order (later wins, maps merged key by key, anything else replaced whole): values files from
the source in the order given, then each ``valuesFrom`` reference in order, then the inline
``values``.  The chart's own ``values.yaml`` is below all of them; Helm coalesces it.  A
reference with ``targetPath`` sets one value at that path (Helm ``--set`` path syntax:
``a.b``, ``a\\.b`` for a dotted key, ``list[0]``) and the value is typed as ``--set`` types it
(``true``/``false``/``null``/integers), which is what Flux does.

The caller fetches ConfigMaps and Secrets (this layer never talks to the API server) and
passes them as ``objects``: ``(kind, name) -> data`` with Secret data already decoded.  Every
string that came from a Secret is returned in ``sensitive`` so error messages can be scrubbed
and diffs masked; YAML errors quote a position, never the offending text.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from reconciler.render import yaml_safe
from reconciler.render.errors import RenderError

DEFAULT_VALUES_KEY = "values.yaml"
_MAX_VALUES_BYTES = 4 * 1024 * 1024


class ValuesError(RenderError):
    """Values that cannot be merged; names the file or reference and the reason (never the value)."""


@dataclass(frozen=True)
class ValuesReference:
    """One ``valuesFrom`` entry (Flux's fields)."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    values_key: str = DEFAULT_VALUES_KEY
    target_path: str = ""
    optional: bool = False

    def describe(self) -> str:
        return f"{self.kind}/{self.name} key {self.values_key!r}"


@dataclass(frozen=True)
class MergedValues:
    values: dict[str, Any]
    sensitive: frozenset[str] = field(default=frozenset())  # strings that came from Secrets


def merge_maps(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: nested maps merge, everything else (lists too) replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_maps(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    if len(text) > _MAX_VALUES_BYTES:
        raise ValuesError(where, None, f"values are larger than {_MAX_VALUES_BYTES} bytes")
    try:
        docs = yaml_safe.load_all(text, max_aliases=100, max_nodes=_MAX_VALUES_BYTES)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValuesError(where, None, f"values are not valid YAML{at}: {e.problem or 'parse error'}") from None
    except (yaml.YAMLError, yaml_safe.YAMLLimitError) as e:
        raise ValuesError(where, None, f"values are not valid YAML: {type(e).__name__}") from None
    docs = [d for d in docs if d is not None]
    if not docs:
        return {}
    if len(docs) > 1 or not isinstance(docs[0], dict):
        raise ValuesError(where, None, "values must be one YAML mapping")
    return docs[0]


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, Mapping):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return {str(value)} if value is not None and not isinstance(value, bool) else set()


_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


def typed(value: str) -> Any:
    """A ``--set`` value as Helm's strvals types it: booleans, null, integers; else the string."""
    if value in ("true", "false"):
        return value == "true"
    if value == "null":
        return None
    if _INT.match(value):
        return int(value)
    return value


def split_path(path: str) -> list[str | int]:
    r"""``a.b\.c[1].d`` -> ``["a", "b.c", 1, "d"]``; ValueError on an unbalanced bracket or empty part."""
    parts: list[str | int] = []
    buf = ""
    i = 0
    while i < len(path):
        c = path[i]
        if c == "\\" and i + 1 < len(path):
            buf += path[i + 1]
            i += 2
            continue
        if c == ".":
            if buf:
                parts.append(buf)
            elif not parts or not isinstance(parts[-1], int):
                raise ValueError(f"empty key in {path!r}")
            buf = ""
        elif c == "[":
            end = path.find("]", i)
            if end < 0 or not path[i + 1 : end].isdigit():
                raise ValueError(f"bad list index in {path!r}")
            if buf:
                parts.append(buf)
                buf = ""
            parts.append(int(path[i + 1 : end]))
            i = end
        else:
            buf += c
        i += 1
    if buf:
        parts.append(buf)
    if not parts or isinstance(parts[0], int):
        raise ValueError(f"path {path!r} must start with a key")
    return parts


def set_path(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``values`` with ``value`` at ``path`` (maps and lists created as needed)."""
    parts = split_path(path)
    out = copy.deepcopy(values)
    node: Any = out
    for part, nxt in zip(parts, [*parts[1:], None], strict=True):
        empty: Any = [] if isinstance(nxt, int) else {}
        if isinstance(part, int):
            if not isinstance(node, list):
                raise ValueError(f"{path!r}: index [{part}] on something that is not a list")
            while len(node) <= part:
                node.append(None)
            if nxt is None:
                node[part] = value
            else:
                if not isinstance(node[part], (dict, list)):
                    node[part] = empty
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise ValueError(f"{path!r}: key {part!r} on something that is not a map")
            if nxt is None:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = empty
                node = node[part]
    return out


def merge_values(
    *,
    files: Sequence[tuple[str, str]] = (),
    references: Sequence[ValuesReference] = (),
    objects: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    inline: Mapping[str, Any] | None = None,
) -> MergedValues:
    """The values for one chart render, merged in Flux's order; ValuesError names the culprit.

    ``files`` are (name, text) of values files read from the source; ``objects`` holds the
    ConfigMaps/Secrets the references name (a missing key or object fails unless ``optional``).
    """
    objects = objects or {}
    result: dict[str, Any] = {}
    sensitive: set[str] = set()
    for name, text in files:
        result = merge_maps(result, _parse_yaml(text, name))
    for i, ref in enumerate(references):
        where = f"valuesFrom[{i}] ({ref.describe()})"
        data = objects.get((ref.kind, ref.name))
        if data is None or ref.values_key not in data:
            if ref.optional:
                continue
            what = f"{ref.kind} {ref.name!r} not found" if data is None else f"key {ref.values_key!r} not found"
            raise ValuesError(where, None, f"{what} (and the reference is not optional)")
        raw = data[ref.values_key]
        if ref.target_path:
            try:
                result = set_path(result, ref.target_path, typed(raw))
            except ValueError as e:
                raise ValuesError(where, None, f"targetPath: {e}") from None
            if ref.kind == "Secret":
                sensitive.add(raw)
            continue
        parsed = _parse_yaml(raw, where)
        if ref.kind == "Secret":
            sensitive |= _strings(parsed)
        result = merge_maps(result, parsed)
    if inline:
        result = merge_maps(result, inline)
    return MergedValues(values=result, sensitive=frozenset(sensitive))
