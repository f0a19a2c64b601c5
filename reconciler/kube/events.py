"""Kubernetes Events (events.k8s.io/v1) about our own objects, deduplicated.

A GitSync failing every retry interval must not flood the namespace with identical
Events: a repeat of the same reason and note on the same object within ``window``
seconds updates the first Event's series (count, last time) instead of creating one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from reconciler.kube import paths
from reconciler.kube.client import MERGE_PATCH, Kube, KubeError, UnreachableError

log = logging.getLogger(__name__)
CONTROLLER = "gitops.reconciler.dev/reconciler"
MAX_NOTE = 1024


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Sent:
    name: str
    count: int
    first: float


class EventRecorder:
    def __init__(self, kube: Kube, instance: str, window: float = 600.0) -> None:
        self._kube = kube
        self._instance = instance
        self._window = window
        self._sent: dict[tuple[str, str, str, str], _Sent] = {}
        self._lock = threading.Lock()

    def emit(self, regarding: dict[str, Any], type_: str, reason: str, note: str, action: str = "Reconcile") -> None:
        """Record an Event; never raises (an Event is worth less than the sync that reports it)."""
        md = regarding.get("metadata") or {}
        ns = str(md.get("namespace") or "default")
        note = note[:MAX_NOTE]
        key = (str(md.get("uid", "")), type_, reason, note)
        try:
            with self._lock:  # held to count, not across the request: workers never queue behind an Event
                sent = self._sent.get(key)
                repeat = sent is not None and time.monotonic() - sent.first < self._window
                if sent is not None and repeat:
                    sent.count += 1
                    name, count = sent.name, sent.count
            if repeat:
                self._kube.request(
                    "PATCH",
                    paths.api_path(group="events.k8s.io", version="v1", resource="events", namespace=ns, name=name),
                    body={"series": {"count": count, "lastObservedTime": _micro_now()}},
                    content_type=MERGE_PATCH,
                )
                return
            ev = self._kube.request(
                "POST",
                paths.api_path(group="events.k8s.io", version="v1", resource="events", namespace=ns),
                body={
                    "apiVersion": "events.k8s.io/v1",
                    "kind": "Event",
                    "metadata": {"generateName": f"{md.get('name')}-", "namespace": ns},
                    "eventTime": _micro_now(),
                    "reportingController": CONTROLLER,
                    "reportingInstance": self._instance,
                    "action": action,
                    "reason": reason,
                    "note": note,
                    "type": type_,
                    "regarding": {
                        "apiVersion": regarding.get("apiVersion"),
                        "kind": regarding.get("kind"),
                        "name": md.get("name"),
                        "namespace": ns,
                        "uid": md.get("uid"),
                        "resourceVersion": md.get("resourceVersion"),
                    },
                },
            )
            with self._lock:
                self._sent[key] = _Sent(ev["metadata"]["name"], 1, time.monotonic())
                if len(self._sent) > 10_000:  # bound memory on long runs
                    cutoff = time.monotonic() - self._window
                    self._sent = {k: v for k, v in self._sent.items() if v.first >= cutoff}
        except (KubeError, UnreachableError) as e:
            log.warning("cannot record Event %s on %s/%s: %s", reason, ns, md.get("name"), e)
            with self._lock:
                self._sent.pop(key, None)
