"""Compile-time checks of ``'<literal>'.format([...])``, as cel-go makes them when a policy is compiled.

Apart from :mod:`reconciler.policy.celformat` (which formats at run time) because it reads CEL
*source*, not values: it is a small scanner of expressions, used once per policy at load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from reconciler.policy.celformat import FormatError, parse_clause

# --- compile-time checks -------------------------------------------------------------------
# cel-go checks ``'<literal>'.format([<list literal>])`` when a policy is compiled: a bad clause,
# too few or too many arguments, or an argument of the wrong static type is a compile error
# there, so it must be a load error here, not a runtime error on every object.

_CLAUSE_KINDS = {
    "d": ("decimal clause can only be used on integers", {"int", "uint"}),
    "f": ("fixed-point clause can only be used on doubles", {"double", "string"}),
    "e": ("scientific clause can only be used on doubles", {"double", "string"}),
    "b": ("only integers and bools can be formatted as binary", {"int", "uint", "bool"}),
    "x": ("only integers, byte buffers, and strings can be formatted as hex", {"int", "uint", "string", "bytes"}),
    "X": ("only integers, byte buffers, and strings can be formatted as hex", {"int", "uint", "string", "bytes"}),
    "o": ("octal clause can only be used on integers", {"int", "uint"}),
}
_FORMAT_CALL = re.compile(r"""('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")\s*\.\s*format\s*(\()\s*\[""")


@dataclass(frozen=True)
class FormatCall:
    """A ``'<literal>'.format([...])`` call found in an expression's source."""

    literal: str  # the format string's CEL literal, quotes included
    call_at: int  # offset of the call's ``(``: cel-go reports arity and syntax errors there
    args: tuple[tuple[str, int], ...]  # each element's source and offset


def literal_format_calls(source: str) -> list[FormatCall]:
    """The format calls whose format string and argument list are literals.  A call this small
    scanner cannot split with certainty is left out (it is checked at runtime instead)."""
    calls = []
    for m in _FORMAT_CALL.finditer(source):
        if not _opens_literal(source, m.start()):
            continue
        args = _split_list(source, m.end() - 1)
        if args is not None:
            calls.append(FormatCall(m.group(1), m.start(2), tuple(args)))
    return calls


def _code(source: str, start: int = 0) -> Iterator[tuple[int, str]]:
    """(offset, character) of what lies outside string literals, from ``start`` (itself outside
    one): an opening quote is yielded, the literal's body and closing quote are not."""
    quote = ""
    i = start
    while i < len(source):
        ch = source[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        else:
            if ch in "'\"":
                quote = ch
            yield i, ch
        i += 1


def _opens_literal(source: str, at: int) -> bool:
    """Whether the quote at ``at`` opens a literal (rather than sitting inside a message text)."""
    return any(i == at for i, _ in _code(source) if i <= at)


def _split_list(source: str, start: int) -> list[tuple[str, int]] | None:
    """Split the list literal opening at ``source[start] == '['`` into (element, offset) pairs."""
    depth = 0
    items: list[tuple[str, int]] = []
    item_start = start + 1
    for i, ch in _code(source, start):
        if ch in "'\"" and source[i : i + 3] in ("'''", '"""'):
            return None  # triple-quoted strings: not worth a scanner
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                if ch != "]" or not re.match(r"\s*\)", source[i + 1 :]):
                    return None
                _add_item(items, source[item_start:i], item_start)
                return items
        elif ch == "," and depth == 1:
            _add_item(items, source[item_start:i], item_start)
            item_start = i + 1
    return None


def _add_item(items: list[tuple[str, int]], text: str, offset: int) -> None:
    if text.strip():
        items.append((text.strip(), offset + len(text) - len(text.lstrip())))


def check_format(text: str, arg_kinds: Sequence[str]) -> tuple[str, int | None] | None:
    """cel-go's compile-time verdict on ``text.format([args])`` given the arguments' static type
    names (``dyn`` passes every check): ``None``, or (message, index of the argument to blame or
    ``None`` for the call)."""
    index = 0
    i = 0
    while i < len(text):
        if text[i] != "%":
            i += 1
            continue
        if text[i + 1 : i + 2] == "%":
            i += 2
            continue
        if i + 1 >= len(text):
            return "unexpected end of string", None
        if index >= len(arg_kinds):
            return f"index {index} out of range", None
        try:
            read, _ = parse_clause(text[i + 1 :])
        except FormatError as e:
            return f"could not parse formatting clause: {e}", None
        verb = text[i + read]
        kind = arg_kinds[index]
        if verb in _CLAUSE_KINDS and kind != "dyn":
            clause, allowed = _CLAUSE_KINDS[verb]
            if kind not in allowed:
                return f"error during formatting: {clause}, was given {kind}", index
        i += 1 + read
        index += 1
    if len(arg_kinds) > index:
        return f"too many arguments supplied to string.format (expected {index}, got {len(arg_kinds)})", None
    return None
