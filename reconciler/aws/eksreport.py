"""How EKS drift is shown: table rows for people (the CLI aligns them), JSON (``-o json``) for scripts."""

from __future__ import annotations

import json
from typing import Any

from reconciler.aws.eksdiff import EksDrift, Finding

HEADER = ("RESOURCE", "FIELD", "DESIRED", "LIVE", "ACTION", "NOTE")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value) or "[]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def rows(findings: list[Finding]) -> list[tuple[str, ...]]:
    """One row per finding, in the order of :data:`HEADER`."""
    return [(f.resource, f.field, _cell(f.desired), _cell(f.live), f.action, f.note) for f in findings]


def document(drift: EksDrift) -> dict[str, Any]:
    return {
        "cluster": drift.cluster,
        "region": drift.region,
        "counts": drift.counts_by_kind(),
        "findings": [f.as_dict() for f in drift.findings],
    }


def to_json(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2, default=str) + "\n"
