"""The vocabulary of readiness (kstatus): states, a health answer, and readers that never raise.

Shared by the generic assessment (``health``) and the per-kind rules (``health_rules``):
both read arbitrary live objects whose status may be missing or malformed, so every reader
here returns a default instead of raising.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class State(enum.StrEnum):
    """kstatus status of one object.

    A ``StrEnum`` (still a ``str`` and an ``Enum``) so that ``f"{state}"`` in a log line or a
    condition reads ``Current``, not ``State.CURRENT``.

    Failed means a controller reports an error it will not get past without a change (or a
    long wait): the rollout should be reported, though the object can still recover later.
    """

    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    NOT_FOUND = "NotFound"


@dataclass(frozen=True)
class Health:
    """A state and the one-line reason for it, ready to go into a condition or an Event."""

    state: State
    message: str


Conditions = dict[str, dict[str, Any]]
Rule = Callable[[dict[str, Any], Conditions], Health]


def get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def text(obj: Any, *path: str) -> str:
    value = get(obj, *path)
    return value if isinstance(value, str) else ""


def integer(obj: Any, *path: str) -> int | None:
    """An integer field; ``bool`` is rejected because JSON ``true`` must not count as 1."""
    value = get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def count(obj: Any, *path: str, default: int = 0) -> int:
    value = integer(obj, *path)
    return default if value is None else value


def group_of(obj: dict[str, Any]) -> str:
    api_version = text(obj, "apiVersion")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def conditions(obj: dict[str, Any]) -> Conditions:
    found = get(obj, "status", "conditions")
    out: Conditions = {}
    for cond in found if isinstance(found, list) else []:
        if isinstance(cond, dict) and isinstance(cond.get("type"), str):
            out[cond["type"]] = cond
    return out


def has(conds: Conditions, kind: str, status: str) -> bool:
    return kind in conds and conds[kind].get("status") == status


def reason_of(cond: dict[str, Any] | None) -> str:
    """``"Reason: message"`` of a condition: operators grep for the reason, read the message."""
    if cond is None:
        return ""
    return ": ".join(p for p in (cond.get("reason"), cond.get("message")) if isinstance(p, str) and p)


def explain(cond: dict[str, Any] | None) -> str:
    """The reason as a suffix (``": Reason: message"``), or nothing when the condition has none."""
    reason = reason_of(cond)
    return f": {reason}" if reason else ""
