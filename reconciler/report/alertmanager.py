"""Alerts straight to Alertmanager's v2 API, besides the PrometheusRule.

For clusters where Prometheus does not scrape us (or scrapes slowly), the controller
itself tells Alertmanager about drift and failing GitSyncs. Each alert carries an
``endsAt``: while the condition lasts it is re-sent (so it stays firing), and when the
condition clears it is sent once more ending now, so it resolves at once instead of
waiting for Alertmanager's resolve timeout.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass

import urllib3

log = logging.getLogger("reconciler.alertmanager")
TTL = dt.timedelta(minutes=5)


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Alert:
    name: str  # GitSyncDriftDetected | GitSyncFailing
    namespace: str
    gitsync: str
    severity: str
    summary: str
    description: str


class AlertmanagerClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self._url = url.rstrip("/") + "/api/v2/alerts"
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout), retries=urllib3.Retry(2))
        self._active: dict[tuple[str, str, str], Alert] = {}
        self._lock = threading.Lock()

    def _post(self, alerts: list[tuple[Alert, dt.datetime]]) -> None:
        body = [
            {
                "labels": {
                    "alertname": a.name,
                    "namespace": a.namespace,
                    "name": a.gitsync,
                    "severity": a.severity,
                    "source": "gitops-reconciler",
                },
                "annotations": {"summary": a.summary, "description": a.description[:2000]},
                "endsAt": _ts(ends),
            }
            for a, ends in alerts
        ]
        try:
            r = self._http.request(
                "POST", self._url, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            if r.status >= 300:
                log.warning("Alertmanager %s answered %s: %s", self._url, r.status, r.data[:200])
        except urllib3.exceptions.HTTPError as e:
            log.warning("cannot reach Alertmanager at %s: %s", self._url, e)

    def fire(self, alert: Alert) -> None:
        with self._lock:
            self._active[(alert.name, alert.namespace, alert.gitsync)] = alert
        self._post([(alert, dt.datetime.now(dt.UTC) + TTL)])

    def resolve(self, name: str, namespace: str, gitsync: str) -> None:
        with self._lock:
            alert = self._active.pop((name, namespace, gitsync), None)
        if alert is not None:
            self._post([(alert, dt.datetime.now(dt.UTC))])

    def refresh(self) -> None:
        """Re-send active alerts before their endsAt passes (call every minute or so)."""
        with self._lock:
            alerts = list(self._active.values())
        if alerts:
            ends = dt.datetime.now(dt.UTC) + TTL
            self._post([(a, ends) for a in alerts])
