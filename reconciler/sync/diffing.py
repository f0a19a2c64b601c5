"""What changed between two versions of an object, safe to show to anyone.

Diffs end up in logs, Events, status messages and ``reconciler diff`` output, all readable by
people who may not read Secrets.  So every function here diffs *masked* copies: a Secret's
``data``/``stringData`` values are replaced by tokens that only say whether a value stayed the
same or changed, and the ``kubectl.kubernetes.io/last-applied-configuration`` annotation is
dropped from every object because client-side ``kubectl apply`` copies the whole manifest,
Secret values included, into it.

Any object of kind ``Secret`` is masked, whatever its apiVersion: masking a look-alike CR
costs a less useful diff, not masking a real Secret leaks it.

Costs (see notes/python-libraries.md): DeepDiff has no fast path for equal inputs and costs
milliseconds per object, so every entry point answers "equal?" with ``==`` first.  (``==``
also treats ``1``, ``1.0`` and ``True`` as equal; the API server's schemas never let those
alternate in one field.)
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import deepdiff
import jsonpatch

MASK = "***"
MASK_BEFORE = "*** (before)"
MASK_AFTER = "*** (after)"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_SECRET_FIELDS = ("data", "stringData")
_MAX_VALUE = 120
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_/-]+")  # no dots, brackets or quotes: safe in a dotted path


def mask_secret(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy fit for display on its own: Secret values become ``***``, last-applied is dropped."""
    out = copy.deepcopy(obj)
    _drop_last_applied(out)
    if _is_secret(out):
        for field in _SECRET_FIELDS:
            if field in out:
                out[field] = _mask_field(out[field], _ABSENT, MASK)
    return out


def masked_pair(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Copies of both sides that still diff correctly but carry no Secret value.

    A value equal on both sides becomes ``***`` on both (no diff); a value that differs, or
    exists on one side only, becomes ``MASK_BEFORE`` / ``MASK_AFTER``.  A diff of the pair
    therefore names every changed key and never a value, not even a length.
    """
    b = None if before is None else copy.deepcopy(before)
    a = None if after is None else copy.deepcopy(after)
    for side in (b, a):
        if side is not None:
            _drop_last_applied(side)
    for field in _SECRET_FIELDS:
        b_value = b.get(field, _ABSENT) if b is not None and _is_secret(b) else _ABSENT
        a_value = a.get(field, _ABSENT) if a is not None and _is_secret(a) else _ABSENT
        if b is not None and b_value is not _ABSENT:
            b[field] = _mask_field(b_value, a_value, MASK_BEFORE)
        if a is not None and a_value is not _ABSENT:
            a[field] = _mask_field(a_value, b_value, MASK_AFTER)
    return b, a


def human_diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """One line per change, kubectl-style paths, sorted by path so reruns read the same.

    ``path: old -> new`` for a change, ``+ path: value`` for an addition, ``- path`` for a
    removal.  A created object is summarised by its top-level fields (the full manifest is in
    git); a deleted one by a single line.  Long values are cut at 120 characters.
    """
    if before == after:
        return []
    b, a = masked_pair(before, after)
    if a is None:
        return ["- (object deleted)"]
    if b is None:
        return ["+ (new object)"] + [
            f"+ {_path([key])}" + ("" if isinstance(a[key], dict | list) else f": {_value(a[key])}")
            for key in sorted(a, key=str)
        ]
    lines: list[str] = []
    for change in _changes(b, a):
        if change.op == "+":
            lines.extend(f"+ {path}: {_value(value)}" for path, value in _leaves(change.parts, change.new))
        elif change.op == "-":
            lines.append(f"- {change.path}")
        else:
            quote = type(change.old) is not type(change.new)  # make `2 -> "2"` visible
            lines.append(f"{change.path}: {_value(change.old, quote)} -> {_value(change.new, quote)}")
    return lines


def json_patch(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``before`` into ``after``, computed on the masked pair.

    Meant for machine-readable reports (``reconciler diff -o json``), not for applying: Secret
    values in it are tokens.  A created object is one ``replace`` of the root with the whole
    (masked) object, a deleted one a ``replace`` of the root with ``null``.
    """
    if before == after:
        return []
    b, a = masked_pair(before, after)
    ops: list[dict[str, Any]] = jsonpatch.make_patch(b, a).patch
    return ops


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The dotted paths that differ, for a short "which fields drifted" Event or log field."""
    if before == after:
        return []
    b, a = masked_pair(before, after)
    if b is None or a is None:  # only reachable by callers ignoring the type hints
        return ["(whole object)"]
    return list(dict.fromkeys(change.path for change in _changes(b, a)))


# --- masking ------------------------------------------------------------------------------


class _Absent:
    """The other side has no such field (or is not a Secret): never equal to a real value."""


_ABSENT: Any = _Absent()


def _is_secret(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Secret"


def _drop_last_applied(obj: dict[str, Any]) -> None:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        del annotations[LAST_APPLIED]
        if not annotations:  # both sides then read "no annotations" alike, whichever had the key
            del metadata["annotations"]


def _mask_field(mine: Any, theirs: Any, token: str) -> Any:
    """``mine`` with each value replaced by ``MASK`` when ``theirs`` has it equal, else ``token``."""
    if mine is None:
        return None  # `data: null` holds nothing to hide, and masking it would invent a diff
    if not isinstance(mine, dict):  # malformed: hide it whole
        return MASK if mine == theirs else token
    other = theirs if isinstance(theirs, dict) else {}
    return {key: MASK if key in other and other[key] == value else token for key, value in mine.items()}


# --- diffing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    sort_key: tuple[tuple[int, Any], ...]
    parts: list[Any]
    op: str  # "+", "-" or "~"
    path: str
    old: Any
    new: Any


_OPS = {
    "dictionary_item_added": "+",
    "iterable_item_added": "+",
    "dictionary_item_removed": "-",
    "iterable_item_removed": "-",
}
_OP_ORDER = {"-": 0, "+": 1, "~": 2}


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[_Change]:
    # threshold_to_diff_deeper=0: DeepDiff otherwise reports a dict whose keys mostly changed
    # as one opaque value change, hiding which labels or data keys were added or removed.
    tree = deepdiff.DeepDiff(before, after, view="tree", threshold_to_diff_deeper=0)
    out: list[_Change] = []
    for report, levels in tree.items():
        op = _OPS.get(report, "~")
        for level in levels:
            parts = level.path(output_format="list")
            key = tuple((0, p) if isinstance(p, int) else (1, str(p)) for p in parts)
            out.append(_Change(key, parts, op, _path(parts), level.t1, level.t2))
    out.sort(key=lambda c: (c.sort_key, _OP_ORDER[c.op]))
    return out


def _leaves(parts: list[Any], value: Any) -> list[tuple[str, Any]]:
    """An added mapping as one line per leaf (``+ metadata.labels.team: web``), keys sorted:
    a whole new ``labels`` or ``resources`` block reads better key by key than as one JSON blob.
    Lists stay whole; their items have no names to line up by."""
    if not isinstance(value, dict) or not value:
        return [(_path(parts), value)]
    out: list[tuple[str, Any]] = []
    for key in sorted(value, key=str):
        out.extend(_leaves([*parts, key], value[key]))
    return out


def _path(parts: list[Any]) -> str:
    """``spec.template.spec.containers[0].args[1]``; keys with dots are bracketed and quoted
    (``metadata.labels["app.kubernetes.io/name"]``) so the path stays unambiguous."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out


def _value(value: Any, quote: bool = False) -> str:
    """Strings bare (``team: web``) unless that would be ambiguous; everything else as JSON."""
    if isinstance(value, str) and not quote and value and value == value.strip() and value.isprintable():
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."
