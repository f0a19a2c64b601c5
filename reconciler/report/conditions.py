"""Status conditions in kstatus form, so `kubectl wait --for=condition=Ready`, Flux-aware
tools and kstatus-based health checks read a GitSync like any well-behaved object.

Ready is the summary; Reconciling is True while a sync runs; Stalled is True when
retrying cannot help (an invalid spec). Healthy and Drifted are ours.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any


class ConditionType(StrEnum):
    """The condition types a GitSync carries, in the order they are listed in its status."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    HEALTHY = "Healthy"
    DRIFTED = "Drifted"


READY, RECONCILING, STALLED, HEALTHY, DRIFTED = tuple(ConditionType)
MAX_MESSAGE = 1024


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]], type_: str, *, status: bool, reason: str, message: str, generation: int
) -> list[dict[str, Any]]:
    """Return the conditions with ``type_`` set; lastTransitionTime moves only when the status does."""
    value = "True" if status else "False"
    out = [c for c in conditions if c.get("type") != type_]
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != value
    out.append(
        {
            "type": str(type_),  # a plain str: status is written as JSON and YAML
            "status": value,
            "reason": reason,
            "message": message[:MAX_MESSAGE],
            "observedGeneration": generation,
            "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),  # type: ignore[union-attr]
        }
    )
    order = list(ConditionType)
    return sorted(out, key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))


def remove_condition(conditions: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    """kstatus: abnormal-true conditions (Reconciling, Stalled) are removed rather than set False."""
    return [c for c in conditions if c.get("type") != type_]


def get(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_ready(obj: dict[str, Any]) -> bool:
    c = get((obj.get("status") or {}).get("conditions") or [], READY)
    gen = (obj.get("metadata") or {}).get("generation")
    return bool(c and c.get("status") == "True" and (obj.get("status") or {}).get("observedGeneration") == gen)
