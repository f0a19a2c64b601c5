"""``string.format()`` as the kube-apiserver evaluates it (cel-go's strings extension, version 2).

The C++ runtime has its own ``format`` whose output differs from cel-go's in the places a
policy message shows: maps print as ``{a: 1}`` instead of ``{"a":1}``, ``%e`` prints
``1.2e+03`` where cel-go writes a multiplication sign and a superscript exponent, ``%f`` has
no thousands separators, and the ``%s`` of a double is not Go's ``%g``.  A user reads the
same denial text offline and from the cluster only if we produce cel-go's text, so this module re-implements cel-go's
formatter (en_US locale, as Kubernetes configures it) over the plain Python values the C++
runtime hands to a custom function.  The rules, quirks included, are cel-go's:
``%.Ne`` treats N as a field *width* (the mantissa always has six decimals), ``%f``/``%e``
format ``-0.0`` without a sign, and ``%s`` inside a list or map quotes strings, bytes and
non-finite doubles the way a CEL literal would be written.

Values the C++ runtime cannot pass through losslessly stay approximations: ``uint`` arrives
as a plain int (prints the same), durations and timestamps arrive with microsecond precision,
and a timestamp arrives in UTC (cel-go keeps the offset it was written with).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

_DEFAULT_PRECISION = 6
_TIMES = "\u00d7"  # MULTIPLICATION SIGN
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_FLOAT_STRINGS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


class FormatError(ValueError):
    """A formatting failure, worded as cel-go words it (the apiserver shows this text)."""


def type_name(value: Any) -> str:
    """The CEL type name cel-go puts into its error messages."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if value is None:
        return "null_type"
    if isinstance(value, Sequence):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, dt.datetime):
        return "google.protobuf.Timestamp"
    if isinstance(value, dt.timedelta):
        return "google.protobuf.Duration"
    return "type"


# --- Go's number and string spellings -------------------------------------------------------


def _digits(x: float) -> tuple[str, int]:
    """Shortest round-trip digits of a finite ``|x|`` and the decimal point's position (Go's ``dp``)."""
    _, digits, exponent = Decimal(repr(abs(x))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + int(exponent)
    return text, (point if text != "0" else 1)


def go_g(x: float) -> str:
    """Go's ``%g`` (what cel-go's ``string(double)`` and ``%s`` print): shortest digits,
    exponent form below 1e-4 and from 1e6 on (Go's fixed rule for shortest precision)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    digits, point = _digits(x)
    exp = point - 1
    if digits != "0" and (exp < -4 or exp >= 6):
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _go_shortest_fixed(x: float) -> str:
    """Go's ``FormatFloat(x, 'f', -1, 64)``: shortest digits, never an exponent."""
    text = format(Decimal(repr(x)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _go_fixed(x: float, precision: int) -> str:
    """Go's plain ``%.Nf`` (no locale), as cel-go prints a double inside a list or map."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:.{precision}f}"


def go_quote(text: str | bytes | bytearray) -> str:
    """Go's ``%q`` (``strconv.Quote``): printable runes kept, others escaped; invalid UTF-8
    bytes as ``\\xNN``."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="surrogateescape")
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _rfc3339nano(value: dt.datetime) -> str:
    """Go's ``time.RFC3339Nano`` (fraction without trailing zeros, ``Z`` for UTC)."""
    text = f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset() or dt.timedelta(0)
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _duration(value: dt.timedelta) -> str:
    return _go_shortest_fixed(value.total_seconds()) + "s"


def type_name_of(value: Any) -> str:
    """A type value's name as cel-go prints it (``int``, ``list``, ``null_type``, ...)."""
    name = str(value.name()).lower() if hasattr(value, "name") else str(value)
    name = name.split("<", 1)[0]
    return {"null": "null_type", "timestamp": "google.protobuf.Timestamp", "duration": "google.protobuf.Duration"}.get(
        name, name
    )


# --- clauses -------------------------------------------------------------------------------


def _as_string(value: Any) -> str:
    """``%s`` of one value (cel-go's ``FormatString``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return go_g(value)
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(
                'could not convert argument "invalid UTF-8 in bytes, cannot convert to string" to string'
            ) from None
    if isinstance(value, dt.datetime):
        return _rfc3339nano(value)
    if isinstance(value, dt.timedelta):
        return _duration(value)
    if isinstance(value, Mapping):
        return _map(value)
    if isinstance(value, Sequence):
        return _list(value)
    return type_name_of(value)


def _literal(value: Any) -> str:
    """A list element or map value, written as cel-go writes it inside ``[...]``/``{...}``."""
    if isinstance(value, float):
        text = _go_fixed(value, _DEFAULT_PRECISION)
        return f'"{text}"' if not math.isfinite(value) else text
    if isinstance(value, dt.datetime):
        return f"timestamp({go_quote(_rfc3339nano(value))})"
    if isinstance(value, dt.timedelta):
        return f"duration({go_quote(_duration(value))})"
    text = _as_string(value)
    if isinstance(value, str):
        return go_quote(text)
    if isinstance(value, bytes | bytearray):
        return "b" + go_quote(text)
    return text


def _list(items: Sequence[Any]) -> str:
    return "[" + ", ".join(_literal(item) for item in items) + "]"


def _map(items: Mapping[Any, Any]) -> str:
    pairs = []
    for key, value in items.items():
        if not isinstance(key, bool | int | str):
            raise FormatError(f"no formatting function for map key of type {type_name(key)}")
        key_text = go_quote(key) if isinstance(key, str) else _as_string(key)
        pairs.append((key_text, _literal(value)))
    pairs.sort(key=lambda pair: pair[0])
    return "{" + ", ".join(f"{k}:{v}" for k, v in pairs) + "}"


def _integer(value: Any, clause: str, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(f"{clause}, was given {type_name(value)}")
    return format(value, spec)


def _decimal(value: Any) -> str:
    return _integer(value, "decimal clause can only be used on integers", "d")


def _octal(value: Any) -> str:
    return _integer(value, "octal clause can only be used on integers", "o")


def _binary(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return _integer(value, "only integers and bools can be formatted as binary", "b")


def _hex(upper: bool) -> Callable[[Any], str]:
    def clause(value: Any) -> str:
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes | bytearray):
            text = bytes(value).hex()
        else:
            text = _integer(value, "only integers, byte buffers, and strings can be formatted as hex", "x")
        return text.upper() if upper else text

    return clause


def _double(value: Any, clause: str) -> float:
    if isinstance(value, str) and value in _FLOAT_STRINGS:
        return _FLOAT_STRINGS[value]
    if not isinstance(value, float):
        raise FormatError(f"{clause} clause can only be used on doubles, was given {type_name(value)}")
    return value


def _localized_special(x: float) -> str | None:
    """How golang.org/x/text prints non-finite numbers (``NaN``, ``∞``, ``-∞``)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return None


def _fixed(precision: int | None) -> Callable[[Any], str]:
    """``%.Nf`` through golang.org/x/text's en_US printer: thousands separators, ``-0.0`` unsigned."""

    def clause(value: Any) -> str:
        x = _double(value, "fixed-point")
        special = _localized_special(x)
        if special is not None:
            return special
        text = format(x, f",.{_DEFAULT_PRECISION if precision is None else precision}f")
        return text.lstrip("-") if x == 0 else text

    return clause


def _scientific(width: int | None) -> Callable[[Any], str]:
    """cel-go builds ``%<N>e`` from ``%.Ne``: N is a width, the mantissa keeps six decimals, and
    x/text writes the exponent as a multiplication sign, 10 and superscript digits (at least two)."""

    def clause(value: Any) -> str:
        x = _double(value, "scientific")
        text = _localized_special(x)
        if text is None:
            mantissa, exponent = f"{abs(x):.{_DEFAULT_PRECISION}e}".split("e")
            exp = int(exponent)
            power = (("-" if exp < 0 else "") + f"{abs(exp):02d}").translate(_SUPERSCRIPT)
            text = f"{'-' if x < 0 else ''}{mantissa}{_TIMES}10{power}"
        return text.rjust(_DEFAULT_PRECISION if width is None else width)

    return clause


# --- the format string ---------------------------------------------------------------------


def _precision(spec: str) -> tuple[int, int | None]:
    """(characters read, precision) of an optional ``.N`` at the start of ``spec``."""
    if not spec.startswith("."):
        return 0, None
    end = 1
    while True:
        if end >= len(spec):
            raise FormatError("error while parsing precision: could not find end of precision specifier")
        if not ("0" <= spec[end] <= "9"):
            break
        end += 1
    digits = spec[1:end]
    if not digits:
        raise FormatError(
            "error while parsing precision: error while converting precision to integer: "
            'strconv.Atoi: parsing "": invalid syntax'
        )
    return end, int(digits)


def parse_clause(spec: str) -> tuple[int, Callable[[Any], str]]:
    """(characters read, formatter) for the clause that starts ``spec`` (the text after ``%``)."""
    read, precision = _precision(spec)
    verb = spec[read]
    clauses: dict[str, Callable[[Any], str]] = {
        "s": _as_string,
        "d": _decimal,
        "f": _fixed(precision),
        "e": _scientific(precision),
        "b": _binary,
        "x": _hex(False),
        "X": _hex(True),
        "o": _octal,
    }
    if verb not in clauses:
        # Go reads one byte here: a non-ASCII verb shows as the Latin-1 character of its first byte.
        shown = chr(verb.encode()[0])
        raise FormatError(f'unrecognized formatting clause "{shown}"')
    return read + 1, clauses[verb]


def format_string(text: str, args: Sequence[Any]) -> str:
    """``text.format(args)`` with cel-go's output and cel-go's error messages."""
    out: list[str] = []
    i = 0
    index = 0
    while i < len(text):
        if text[i] != "%":
            out.append(text[i])
            i += 1
            continue
        if text[i + 1 : i + 2] == "%":
            out.append("%")
            i += 2
            continue
        if index >= len(args):
            raise FormatError(f"index {index} out of range")
        if i + 1 >= len(text):
            raise FormatError("unexpected end of string")
        try:
            read, clause = parse_clause(text[i + 1 :])
        except FormatError as e:
            raise FormatError(f"could not parse formatting clause: {e}") from None
        try:
            out.append(clause(args[index]))
        except FormatError as e:
            raise FormatError(f"error during formatting: {e}") from None
        i += 1 + read
        index += 1
    return "".join(out)


def quote(text: str) -> str:
    """cel-go's ``strings.quote``: only quotes, backslashes and C escapes are escaped."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(_GO_ESCAPES.get(ch, ch))
    out.append('"')
    return "".join(out)


def join(items: Sequence[Any], separator: str = "") -> str:
    """cel-go's ``list.join``: every element must be a string."""
    for item in items:
        if not isinstance(item, str):
            raise FormatError(f"join: invalid input: {_as_string(item)}")
    return separator.join(items)
