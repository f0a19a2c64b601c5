"""The ONE place that turns how a reconcile ended into status conditions, an Event, metrics and a log line.

Each outcome is reported four ways at once, from the same facts, so ``kubectl get gitsync``,
``kubectl events``, Grafana and ``kubectl logs | grep ERROR`` never disagree about why a sync
failed. The outcomes: a failure (a StepError), a wait on a dependency (no Event, no failure
count), a success, a success with nothing to do under the GitSync's path, and the drift.mode
warn no-op (only the Reconciling condition goes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.gitsync.errors import StepError
from reconciler.gitsync.progress import PROGRESS_AFTER, DeferredMarks
from reconciler.gitsync.results import ReconcileResult
from reconciler.kube.client import KubeError, UnreachableError
from reconciler.report import conditions as cond
from reconciler.report.metrics import Metrics
from reconciler.sync.objects import ObjectId

log = logging.getLogger("reconciler.gitsync")

StatusWriter = Callable[[dict[str, Any], dict[str, Any]], None]  # (GitSync, status fields) -> merge-patched


class Recorder(Protocol):
    """Where Events go (kube.events.EventRecorder; a list in unit tests)."""

    def emit(self, regarding: dict[str, Any], type_: str, reason: str, note: str, action: str = "Reconcile") -> None:
        """Record one Event; never raises."""


@dataclass(frozen=True)
class Success:
    """The facts of a successful sync the report needs."""

    revision: str
    message: str  # "Applied revision ...: <counts>"
    inventory: list[dict[str, str]]  # the inventory as status shows it
    managed: int  # how many objects it holds
    changed: bool  # something was written, or the revision is new: worth an Event
    pruned: Sequence[ObjectId] = ()  # default (): what this sync deleted
    healthy: bool = False  # default False; True: the health check ran and passed


def conditions_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def _key(obj: dict[str, Any]) -> tuple[str, str, int]:
    md = obj["metadata"]
    return md["namespace"], md["name"], int(md.get("generation") or 0)


class Outcomes:
    """Writes each outcome of a reconcile; ``patch_status`` merge-patches the status subresource."""

    def __init__(
        self, *, patch_status: StatusWriter, events: Recorder, metrics: Metrics, progress_after: float = PROGRESS_AFTER
    ) -> None:
        """``progress_after``: seconds a reconcile runs before its Reconciling mark is written
        (:mod:`reconciler.gitsync.progress`; 0: at once)."""
        self.patch_status, self.events, self.metrics = patch_status, events, metrics
        self.marks = DeferredMarks(after=progress_after)

    def settle(self, obj: dict[str, Any]) -> None:
        """The reconcile of ``obj`` ends: its pending Reconciling mark is dropped (or, already on
        its way, waited for). Every verdict does this first; a reconcile ending without one too."""
        ns, name, _ = _key(obj)
        self.marks.settle((ns, name))

    def _write(self, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """A verdict's status: written after any Reconciling mark of this reconcile (:meth:`settle`)."""
        self.settle(obj)
        return self._store(obj, status)

    @staticmethod
    def unwritten(obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """Whether a verdict's ``status`` failed to reach the API server: the writer takes back what
        it could not store (``Reconciler._patch_status``), so the GitSync's copy lacks it."""
        current = obj.get("status") or {}
        return any(k not in current for k in status)

    def _store(self, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """Merge ``status`` into the GitSync, and PATCH it only when that changes a field: a no-op
        interval of a fleet would otherwise cost a write (and a watch event to every watcher) per
        GitSync. Conditions keep their lastTransitionTime while their status holds, so an
        unchanged verdict compares equal. True when it wrote."""
        current = obj.setdefault("status", {})
        if all(k in current and current[k] == v for k, v in status.items()):
            return False
        current.update(status)
        try:
            self.patch_status(obj, status)
        except Exception:
            for key in status:  # not stored: the next outcome must not take it for unchanged
                current.pop(key, None)
            raise
        return True

    def reconciling(self, obj: dict[str, Any], message: str) -> None:
        """Reconciling True while a sync runs (and Ready False, Progressing, until a first verdict),
        written once the sync has run ``progress_after`` seconds without a verdict."""
        ns, name, gen = _key(obj)
        cs = cond.set_condition(
            conditions_of(obj), cond.RECONCILING, status=True, reason="Progressing", message=message, generation=gen
        )
        if cond.get(cs, cond.READY) is None:
            cs = cond.set_condition(cs, cond.READY, status=False, reason="Progressing", message=message, generation=gen)
        self.marks.defer((ns, name), lambda: self._mark(obj, cs))

    def _mark(self, obj: dict[str, Any], conditions: list[dict[str, Any]]) -> None:
        """Write a due Reconciling mark (no verdict yet: a verdict's settle drops a pending one)."""
        self._store(obj, {"conditions": conditions})

    def failed(
        self, obj: dict[str, Any], error: StepError, *, message: str, revision: str, extra: dict[str, Any]
    ) -> ReconcileResult:
        """Ready False with the error's reason (Stalled too when retrying cannot help)."""
        ns, name, gen = _key(obj)
        cs = cond.set_condition(
            conditions_of(obj), cond.READY, status=False, reason=error.reason, message=message, generation=gen
        )
        cs = cond.remove_condition(cs, cond.RECONCILING)
        if error.stalled:
            cs = cond.set_condition(cs, cond.STALLED, status=True, reason=error.reason, message=message, generation=gen)
        else:
            cs = cond.remove_condition(cs, cond.STALLED)
        status: dict[str, Any] = {"conditions": cs, "observedGeneration": gen, **extra}
        if revision:
            status["lastAttemptedRevision"] = revision
        try:
            self._write(obj, status)
        except (KubeError, UnreachableError) as e:
            # The API server that failed the sync often refuses its status too: the log line and
            # the metrics below must still say why it failed (they are all an operator has then).
            log.warning(f"GitSync {ns}/{name}: status not written: {e}", extra={"gitsync": f"{ns}/{name}"})
        if error.waiting:
            log.info(message, extra={"gitsync": f"{ns}/{name}", "reason": error.reason})
        else:
            self.events.emit(obj, "Warning", error.event_reason, message)
            self.metrics.reconciles.labels(ns, name, "failure").inc()
            log.error(message, extra={"gitsync": f"{ns}/{name}", "revision": revision, "reason": error.reason})
        self.metrics.ready.labels(ns, name).set(0)
        self.metrics.stalled.labels(ns, name).set(1 if error.stalled else 0)
        return ReconcileResult(ok=False, stalled=error.stalled, waiting=error.waiting, revision=revision)

    def succeeded(self, obj: dict[str, Any], done: Success, *, extra: dict[str, Any]) -> ReconcileResult:
        """Ready True, the revision applied and the inventory shown; an Event only when something changed."""
        ns, name, gen = _key(obj)
        cs = cond.set_condition(
            conditions_of(obj),
            cond.READY,
            status=True,
            reason="ReconciliationSucceeded",
            message=done.message,
            generation=gen,
        )
        cs = cond.remove_condition(cs, cond.RECONCILING)
        cs = cond.remove_condition(cs, cond.STALLED)
        if done.healthy:
            cs = cond.set_condition(
                cs,
                cond.HEALTHY,
                status=True,
                reason="Succeeded",
                message="all applied objects are healthy",
                generation=gen,
            )
        status = {
            "conditions": cs,
            "observedGeneration": gen,
            "lastAttemptedRevision": done.revision,
            "lastAppliedRevision": done.revision,
            "inventory": done.inventory,
            **extra,
        }
        self._write(obj, status)
        unwritten = self.unwritten(obj, status)
        if done.changed:
            self.events.emit(obj, "Normal", "Synced", done.message)
            if done.pruned:
                pruned = ", ".join(str(oid) for oid in done.pruned[:20])
                self.events.emit(obj, "Normal", "Pruned", f"revision {done.revision}: pruned {pruned}")
        self._succeeded(ns, name, revision=done.revision, message=done.message)
        self.metrics.ready.labels(ns, name).set(1)
        self.metrics.stalled.labels(ns, name).set(0)
        self.metrics.managed.labels(ns, name).set(done.managed)
        return ReconcileResult(ok=True, revision=done.revision, unwritten=unwritten)

    def unchanged(self, obj: dict[str, Any], *, revision: str, extra: dict[str, Any]) -> ReconcileResult:
        """Nothing to do: a push that changed nothing under this GitSync's path (Ready at the new
        revision, no Event), or a quiet interval (the status stands as it is: no write)."""
        ns, name, gen = _key(obj)
        st = obj.get("status") or {}
        ready = cond.get(conditions_of(obj), cond.READY) or {}
        msg = f"Applied revision {revision}: nothing changed under this GitSync's path"
        if st.get("lastAppliedRevision") == revision and ready.get("status") == "True" and ready.get("message"):
            msg = str(ready["message"])
        cs = cond.set_condition(
            conditions_of(obj), cond.READY, status=True, reason="ReconciliationSucceeded", message=msg, generation=gen
        )
        cs = cond.remove_condition(cs, cond.RECONCILING)
        status = {
            "conditions": cs,
            "observedGeneration": gen,
            "lastAttemptedRevision": revision,
            "lastAppliedRevision": revision,
            **extra,
        }
        self._write(obj, status)
        self._succeeded(ns, name, revision=revision, message=msg)
        return ReconcileResult(ok=True, revision=revision, unwritten=self.unwritten(obj, status))

    def held(self, obj: dict[str, Any], *, revision: str, drifted: int) -> ReconcileResult:
        """drift.mode warn on the applied revision: drift is reported, never corrected."""
        ns, name, _ = _key(obj)
        gid = f"{ns}/{name}"
        log.info(
            f"GitSync {gid}: {drifted} drifted object(s) left as they are (drift.mode: warn)",
            extra={"gitsync": gid, "revision": revision, "reason": "DriftDetected"},
        )
        self._write(obj, {"conditions": cond.remove_condition(conditions_of(obj), cond.RECONCILING)})
        return ReconcileResult(ok=True, revision=revision)

    def violations(
        self, obj: dict[str, Any], lines: Sequence[str], *, counts: Sequence[tuple[str, int]], total: int
    ) -> None:
        """Policy findings of this revision: one gauge per policy (old series dropped) and one Warning
        Event naming the first ten of ``total`` (``lines``: those, described and scrubbed)."""
        ns, name, _ = _key(obj)
        self.metrics.drop_series(self.metrics.policy_violations, ns, name)
        for pol, n in counts:
            self.metrics.policy_violations.labels(ns, name, pol).inc(n)
        if lines:
            more = f" (and {total - 10} more)" if total > 10 else ""
            self.events.emit(obj, "Warning", "PolicyViolation", "; ".join(lines[:10]) + more, action="CheckPolicy")

    def _succeeded(self, ns: str, name: str, *, revision: str, message: str) -> None:
        log.info(message, extra={"gitsync": f"{ns}/{name}", "revision": revision, "reason": "ReconciliationSucceeded"})
        self.metrics.reconciles.labels(ns, name, "success").inc()
        self.metrics.last_success.labels(ns, name).set(time.time())
        self.metrics.set_revision(ns, name, revision)
