"""Durations as Kubernetes and Flux users write them (``10s``, ``5m``, ``1h30m``, ``250ms``),
read the same way everywhere: CLI flags, GitSync spec fields, anything in seconds.

Here, low in the layers, so that the CLI and the spec reader share one parser and one error
text (a flag refusing ``10s`` while the spec accepts it is what a new user meets first).
A bare number is seconds, as the flags took before; Go's ``us``/``ns`` units are refused,
nothing here waits less than a millisecond.
"""

from __future__ import annotations

import math
import re

ACCEPTED = "a duration like 10s, 5m, 1h30m, 250ms or 1.5h, or a number of seconds"

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")  # the CRD's pattern for interval, timeout...
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class DurationError(ValueError):
    """Not a duration; the message quotes the text and names the accepted forms."""


def parse(text: str) -> float:
    """Seconds in ``text``: ``10s``, ``5m``, ``1h30m``, ``250ms``, ``1.5h`` or ``30`` (seconds).

    Negative values, empty text and unknown units raise :class:`DurationError`.
    """
    s = text.strip()
    if _NUMBER.fullmatch(s):
        return float(s)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not s or pos != len(s) or not math.isfinite(total):
        raise DurationError(f"{text!r} is not {ACCEPTED}")
    return total


def to_text(seconds: float) -> str:
    """``seconds`` the way people write it (``5m``, ``1h30m``, ``250ms``, ``1.5s``), for help texts."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if not float(seconds).is_integer():
        return f"{seconds:g}s"
    rest = int(seconds)
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out += f"{n}{unit}"
    return out
