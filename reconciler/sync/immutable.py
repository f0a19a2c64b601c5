"""Recognise an API server refusal to change an immutable field, and say which field and why.

The API server has no single reason for "immutable": each kind's validation words it its
own way (``field is immutable`` for a Deployment's selector or a Job's template, ``updates
to parameters are forbidden`` for a StorageClass, ``cannot change roleRef`` for a RoleBinding,
``may not change once set`` for a Service's clusterIPs, ``spec is immutable after creation``
for a PersistentVolumeClaim, ``field is immutable when `immutable` is set`` for Secrets and
ConfigMaps).  So the Status causes are matched on those phrases, the field is taken from
the cause (or, when a server sends no causes, from the message), and the server's own
message always goes with our error: it is the only text that says what may change instead.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.kube.client import KubeError

_IMMUTABLE = re.compile(
    r"immutable|may not change once set|cannot change|updates to [\w.]+ are forbidden|field is not mutable",
    re.IGNORECASE,
)
# "<Kind> "<name>" is invalid: <field>: Forbidden|Invalid value: ..." (also inside "[a, b]" lists)
_FIELD_IN_MESSAGE = re.compile(r"(?:is invalid: \[?|, )([A-Za-z][\w.\[\]/-]*): (?:Forbidden|Invalid value)")
# A Job's refusal quotes its whole template before "field is immutable", a PVC's follows
# "spec is immutable after creation except ..." with a spec diff: keep both ends.
HEAD, TAIL = 360, 240


def fields(e: KubeError) -> list[str]:
    """The immutable fields a refused write would have changed, in the server's order; [] if
    the refusal is about something else."""
    if e.status != 422:
        return []
    out = [c.get("field", "") for c in e.causes if _IMMUTABLE.search(c.get("message", ""))]
    if not any(out) and _IMMUTABLE.search(e.message):
        out = _FIELD_IN_MESSAGE.findall(e.message) or ["(named in the API server's message)"]
    return list(dict.fromkeys(f for f in out if f))


def server_message(e: KubeError) -> str:
    """The API server's own message on one line; a long one keeps its start and its end."""
    text = " ".join(e.message.split())
    return text if len(text) <= HEAD + TAIL + 3 else f"{text[:HEAD]} … {text[-TAIL:]}"


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
MAX_PATHS = 5


def changed_below(field: str, desired: dict[str, Any], live: dict[str, Any] | None) -> list[str]:
    """The paths under ``field`` where git differs from the live object, e.g. ``spec`` of a PVC
    -> ``spec.storageClassName``: the server names only the whole immutable block. Paths only,
    never values (a Secret's ``data`` is one of these fields)."""
    if live is None:
        return []
    want, have = _at(desired, field), _at(live, field)
    if want is _MISSING:
        return []
    out: list[str] = []
    _diff(want, have, path=field, out=out)
    return out[:MAX_PATHS] if out != [field] else []


_MISSING = object()


def _at(obj: Any, path: str) -> Any:
    for name, index in _STEP.findall(path):
        if name and isinstance(obj, dict) and name in obj:
            obj = obj[name]
        elif index and isinstance(obj, list) and int(index) < len(obj):
            obj = obj[int(index)]
        else:
            return _MISSING
    return obj


def _diff(want: Any, have: Any, *, path: str, out: list[str]) -> None:
    """Leaves of ``want`` (what git sets) that ``have`` lacks or holds otherwise."""
    if isinstance(want, dict) and isinstance(have, dict):
        for k, v in want.items():
            _diff(v, have.get(k, _MISSING), path=f"{path}.{k}", out=out)
    elif want != have:
        out.append(path)
