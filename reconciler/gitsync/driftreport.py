"""Telling everyone that a GitSync's objects drifted from git, or match it again.

The drift watch (:mod:`reconciler.gitsync.drift`) says which objects differ; this turns a
change of that set into the ``Drifted`` condition, ``status.drift``, a DriftDetected or
DriftCorrected Event, the drift metric, one log line and the Alertmanager alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.gitsync.drift import Drift
from reconciler.gitsync.reconcile import SyncState
from reconciler.gitsync.spec import DriftMode, SpecError, gitsync_path, parse
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.events import EventRecorder
from reconciler.report import conditions as cond
from reconciler.report.alertmanager import Alert, AlertmanagerClient
from reconciler.report.metrics import Metrics
from reconciler.sync.objects import ObjectId

log = logging.getLogger("reconciler.gitsync.loop")
Key = tuple[str, str]


@dataclass(frozen=True, kw_only=True)
class DriftReporter:
    kube: Kube
    metrics: Metrics
    events: EventRecorder
    alerts: AlertmanagerClient | None
    """None: no Alertmanager configured (``run --alertmanager-url``)."""
    write_status: Callable[[dict[str, Any], dict[str, Any]], None]
    """Merge-patches a GitSync's status (the same writer the reconcile uses)."""

    def report(self, key: Key, drifted: dict[ObjectId, Drift], state: SyncState) -> DriftMode | None:
        """Report ``drifted`` (the GitSync's drifted objects now; empty: none) if it changed the
        picture; returns the GitSync's drift mode when a report was written, None otherwise."""
        ns, name = key
        try:  # the cache may lag our own status writes: never write back a stale conditions list
            obj = self.kube.get(gitsync_path(ns, name))
        except (KubeError, UnreachableError) as e:
            log.warning(f"GitSync {ns}/{name}: cannot read it to report drift: {e}")
            return None
        try:
            spec = parse(obj)
        except SpecError:
            return None
        n, before = len(drifted), state.drifted
        state.drifted = n
        self.metrics.drift.labels(ns, name).set(n)
        if n:
            status = self._detected(obj, key, drifted)
        elif before:
            status = self._corrected(obj, key)
        else:
            return None
        self.write_status(obj, status)
        return spec.drift_mode

    def _detected(self, obj: dict[str, Any], key: Key, drifted: dict[ObjectId, Drift]) -> dict[str, Any]:
        ns, name = key
        n = len(drifted)
        what = "; ".join(f"{d.oid}: {', '.join(d.paths[:5])}" for d in list(drifted.values())[:10])
        msg = f"GitSync {ns}/{name}: {n} object(s) drifted from git: {what}"
        self.events.emit(obj, "Warning", "DriftDetected", msg, action="DetectDrift")
        log.warning(msg, extra={"gitsync": f"{ns}/{name}", "reason": "DriftDetected"})
        if self.alerts:
            self.alerts.fire(
                Alert("GitSyncDriftDetected", ns, name, "warning", f"GitSync {ns}/{name} has drifted", msg)
            )
        return {
            "drift": {"objects": n, "lastDetectedAt": cond.now()},
            "conditions": _drifted(obj, status=True, reason="DriftDetected", message=msg),
        }

    def _corrected(self, obj: dict[str, Any], key: Key) -> dict[str, Any]:
        ns, name = key
        msg = f"GitSync {ns}/{name}: drift corrected; live state matches git again"
        self.events.emit(obj, "Normal", "DriftCorrected", msg, action="CorrectDrift")
        log.info(msg, extra={"gitsync": f"{ns}/{name}", "reason": "DriftCorrected"})
        if self.alerts:
            self.alerts.resolve("GitSyncDriftDetected", ns, name)
        return {
            "drift": {"objects": 0},
            "conditions": _drifted(obj, status=False, reason="DriftCorrected", message=msg),
        }


def _drifted(obj: dict[str, Any], *, status: bool, reason: str, message: str) -> list[dict[str, Any]]:
    """The GitSync's conditions with ``Drifted`` set."""
    gen = int(obj["metadata"].get("generation") or 0)
    cs = list((obj.get("status") or {}).get("conditions") or [])
    return cond.set_condition(cs, cond.DRIFTED, status=status, reason=reason, message=message, generation=gen)
