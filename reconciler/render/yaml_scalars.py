"""What a YAML scalar means to kubectl, so that a manifest means the same here as under ``kubectl apply``.

kubectl 1.32 (and the API server, kustomize's final decode and Flux) read YAML through
``sigs.k8s.io/yaml`` v1.4.0, in three steps this module reproduces for one scalar:

1. **go-yaml v2 resolves the plain scalar** (``sigs.k8s.io/yaml/goyaml.v2``, ``resolve.go``).
   Its rules are YAML 1.1 flavoured but are neither PyYAML's nor YAML 1.2's: ``y``/``n``,
   ``yes``/``no``, ``on``/``off`` (three spellings each) are booleans; ``~``, ``null``,
   ``Null``, ``NULL`` and the empty scalar are null; integers are whatever Go's
   ``strconv.ParseInt(s, 0, 64)`` takes once every ``_`` is removed (``0777`` and ``0o777``
   are octal, ``0x1F`` hex, ``0b101`` binary, ``1_000`` is 1000), then ``ParseUint`` up to
   2^64-1; floats match ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`` (so ``08``
   is 8.0 and ``1e3`` is 1000.0), plus ``.inf``/``.nan`` spellings; a float that overflows
   (``1e400``) stays a string.  Timestamps are recognised but handed back as the text the
   author wrote.  Everything else is a string, notably ``=`` (YAML 1.1's "value" type,
   which PyYAML's default resolver cannot construct), ``<<`` outside a mapping key,
   ``1:20`` (no base 60) and a hex number too large for 64 bits.
2. **Conversion to JSON** (``yaml.go``: ``convertToJSONableObject``, then ``encoding/json``):
   map keys become strings (``true``, ``16``, a float formatted as Go's ``%g`` of a float32:
   ``1e+06``); a null or >int64 key is an error; NaN and ±Inf cannot be encoded: an error.
3. **Decoding that JSON** into an unstructured object: a number written as an integer in
   int64 range becomes an integer, any other a float64.  Go writes an integral float as its
   shortest digits padded with zeros, so ``1.0`` and ``1e3`` arrive as the integers 1 and
   1000, ``1.2345678901234567e17`` as 123456789012345680, and 2^64-1 (and -2^63 written as
   a float) as floats.

Measured against ``kubectl create --dry-run=client -o json`` in
``tests/integration/test_yaml_differential.py``; the rules here are read from that code, not
guessed.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import math
import re
import struct
from typing import Any

PREFIX = "tag:yaml.org,2002:"
STR, BOOL, INT, FLOAT, NULL = (PREFIX + t for t in ("str", "bool", "int", "float", "null"))
TIMESTAMP, MERGE, BINARY = (PREFIX + t for t in ("timestamp", "merge", "binary"))
SCALAR_TAGS = (STR, BOOL, INT, FLOAT, NULL, TIMESTAMP, MERGE, BINARY)

_INT64_MIN, _INT64_LIMIT, _UINT64_LIMIT = -(2**63), 2**63, 2**64

_FIXED: dict[str, tuple[str, Any]] = {}
for _words, _entry in (
    ("y Y yes Yes YES true True TRUE on On ON", (BOOL, True)),
    ("n N no No NO false False FALSE off Off OFF", (BOOL, False)),
    ("~ null Null NULL", (NULL, None)),
    (".nan .NaN .NAN", (FLOAT, math.nan)),
    (".inf .Inf .INF +.inf +.Inf +.INF", (FLOAT, math.inf)),
    ("-.inf -.Inf -.INF", (FLOAT, -math.inf)),
):
    for _w in _words.split():
        _FIXED[_w] = _entry
_FIXED[""] = (NULL, None)

# The first character decides which rules go-yaml tries at all (its resolveTable).
_SIGN_OR_DIGIT = frozenset("+-0123456789")
_GO_INT = re.compile(r"([+-]?)(?:0([bB])([01]+)|0([oO])([0-7]+)|0([xX])([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))\Z")
_YAML_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?\Z")
# go-yaml's timestamp layouts: 2006-1-2, 2006-1-2 15:4:5.999999999 and 2006-1-2T15:4:5.999999999Z07:00.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt]\d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))|(?: \d{1,2}:\d{1,2}:\d{1,2}(?:\.\d+)?))?\Z"
)
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class ScalarError(ValueError):
    """A scalar kubectl cannot read either (wrong explicit tag, NaN, a null key); the message says why."""


def _short(tag: str) -> str:
    return "!!" + tag[len(PREFIX) :] if tag.startswith(PREFIX) else tag


def _is_timestamp(text: str) -> bool:
    m = _TIMESTAMP.match(text)
    if m is None:
        return False
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    if not 1 <= month <= 12 or day < 1:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return day <= (29 if month == 2 and leap else 28 if month == 2 else _DAYS[month - 1])


def _go_parse_int(plain: str) -> int | None:
    """``strconv.ParseInt(plain, 0, 64)``, then ``ParseUint``: the value, or None (syntax or range)."""
    m = _GO_INT.match(plain)
    if m is None:
        return None
    sign, groups = m[1], m.groups()[1:]
    if groups[1] is not None:
        value = int(groups[1], 2)
    elif groups[3] is not None:
        value = int(groups[3], 8)
    elif groups[5] is not None:
        value = int(groups[5], 16)
    elif groups[6] is not None:
        value = int(groups[6], 8)
    else:
        value = int(groups[7])
    value = -value if sign == "-" else value
    if _INT64_MIN <= value < _INT64_LIMIT:
        return value
    if not sign and value < _UINT64_LIMIT:  # ParseUint takes no sign
        return value
    return None


def _finite_float(text: str) -> float | None:
    value = float(text)
    return None if math.isinf(value) else value  # Go's ParseFloat reports overflow as an error


def resolve_plain(text: str, *, timestamps: bool = True) -> tuple[str, Any]:
    """(tag, Go value) of a plain scalar, as go-yaml v2's ``resolve("", text)``.

    Timestamps come back as the text itself (go-yaml hands a timestamp to an untyped target
    as its string).  A plain ``<<`` gets the merge tag so a mapping can recognise a merge
    key; anywhere else it is the string ``"<<"``.
    """
    if text == "<<":
        return MERGE, text
    if (fixed := _FIXED.get(text)) is not None:  # every entry starts with a character go-yaml looks up
        return fixed
    first = text[:1]
    if first == ".":
        if _DOT_FLOAT.match(text) and (f := _finite_float(text)) is not None:
            return FLOAT, f
    elif first in _SIGN_OR_DIGIT:
        if timestamps and _is_timestamp(text):
            return TIMESTAMP, text
        plain = text.replace("_", "")
        if (i := _go_parse_int(plain)) is not None:
            return INT, i
        if _YAML_FLOAT.match(plain) and (f := _finite_float(plain)) is not None:
            return FLOAT, f
    return STR, text


def resolve_tagged(tag: str, text: str) -> tuple[str, Any]:
    """(tag, Go value) of a scalar written with an explicit core tag (or resolved to one).

    As go-yaml: ``!!str`` takes anything, ``!!binary`` is base64 of UTF-8 text, ``!!float``
    takes an integer, and any other mismatch is kubectl's own error, ``cannot decode !!str
    `abc` as a !!int``.
    """
    if tag in (STR, MERGE):
        return STR, text
    if tag == BINARY:
        try:
            raw = base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True)
        except binascii.Error:
            raise ScalarError("!!binary value contains invalid base64 data") from None
        try:
            return STR, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ScalarError(
                "!!binary value is not UTF-8 text; a manifest field holds text (put bytes in a Secret's data, base64, "
                "without the tag)"
            ) from None
    rtag, value = resolve_plain(text, timestamps=tag == TIMESTAMP)
    if rtag == MERGE:
        rtag = STR
    if rtag == tag:
        return rtag, value
    if tag == FLOAT and rtag == INT and _INT64_MIN <= value < _INT64_LIMIT:
        return FLOAT, float(value)
    raise ScalarError(f"cannot decode {_short(rtag)} `{text}` as a {_short(tag)}")


def json_value(tag: str, value: Any) -> Any:
    """The value as the API server receives it (after Go's JSON encoding and unstructured decoding)."""
    if tag == INT:
        return value if _INT64_MIN <= value < _INT64_LIMIT else float(value)
    if tag == FLOAT:
        if math.isnan(value) or math.isinf(value):
            raise ScalarError(f"{_go_float_name(value)} cannot be represented in JSON (kubectl refuses it too)")
        if value.is_integer():
            # Go writes the float's shortest digits, zero-padded ("9223372036854776000"), and the
            # decoder keeps that text as an integer only if it fits int64.
            as_written = int(decimal.Decimal(repr(value)))
            if _INT64_MIN <= as_written < _INT64_LIMIT:
                return as_written
    return value


def json_key(tag: str, value: Any) -> str:
    """A resolved map key as the JSON object key kubectl makes of it (sigs.k8s.io/yaml's conversion)."""
    if tag == BOOL:
        return "true" if value else "false"
    if tag == INT:
        if _INT64_MIN <= value < _INT64_LIMIT:
            return str(value)
        raise ScalarError(f"map key {value} is beyond int64, which kubectl cannot use as a key either")
    if tag == FLOAT:
        return _go_float32_g(value)
    if tag == NULL:
        raise ScalarError("a null map key (empty, ~ or null) cannot become a JSON key; quote it if it is meant as text")
    return str(value)


def _go_float_name(value: float) -> str:
    return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"


def _go_float32_g(value: float) -> str:
    """``strconv.FormatFloat(value, 'g', -1, 32)`` with go-yaml's names for the specials."""
    if math.isnan(value):
        return ".nan"
    try:
        f32 = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        f32 = math.copysign(math.inf, value)
    if math.isinf(f32):
        return _go_float_name(f32)
    if f32 == 0:
        return "-0" if math.copysign(1.0, f32) < 0 else "0"
    for precision in range(1, 10):  # the shortest decimal that reads back as the same float32
        text = f"{abs(f32):.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == abs(f32):
            break
    mantissa, exp_text = text.split("e")
    digits, exp = mantissa.replace(".", "").rstrip("0") or "0", int(exp_text)
    sign = "-" if f32 < 0 else ""
    if exp < -4 or exp >= 6:  # Go's %g switches to exponent form at 1e-4 and 1e6 for the shortest form
        frac = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{frac}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"
