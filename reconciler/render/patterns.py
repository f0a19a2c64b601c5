"""Regular expressions a tenant writes, matched against names a tenant chooses: RE2 only.

Python's ``re`` backtracks, so ``(a|aa)*c`` against a long object name runs for hours while
holding the GIL — every worker, every watch and ``/healthz`` with it.  RE2 matches in time
linear in the input and refuses the constructs (back-references, look-around) that need
backtracking.  It is also the dialect kustomize (Go's ``regexp``) and Flux use, so a target
copied from a kustomization selects the same objects here.

The pattern itself is capped too: RE2 compiles in memory proportional to its length, and no
selector needs a kilobyte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

MAX_PATTERN_BYTES = 1024

_OPTIONS: Any = re2.Options()
_OPTIONS.log_errors = False  # a tenant's typo would otherwise be written to stderr by the C++ library


@dataclass(frozen=True)
class Pattern:
    """A compiled, anchored RE2 pattern: ``matches`` is true when it matches the whole text."""

    source: str
    _compiled: Any

    def matches(self, text: str) -> bool:
        return self._compiled.search(text) is not None


def anchored(pattern: str, *, field: str) -> Pattern:
    """``pattern`` anchored at both ends as kustomize anchors it (``^(?:pattern)$``).

    Raises ValueError naming ``field`` when the pattern is too long or not valid RE2.
    """
    size = len(pattern.encode("utf-8"))
    if size > MAX_PATTERN_BYTES:
        raise ValueError(f"{field}: regular expression is {size} bytes, over the limit of {MAX_PATTERN_BYTES}")
    try:
        compiled = re2.compile(f"^(?:{pattern})$", _OPTIONS)
    except re2.error as e:
        why = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"{field}: invalid regular expression {pattern!r} (RE2 syntax): {why}") from None
    return Pattern(pattern, compiled)
