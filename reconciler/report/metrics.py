"""Prometheus metrics of the controller.

Labels are per GitSync at most (``namespace``, ``name``), never per managed object:
a fleet of thousands of objects must not turn into thousands of series. The names are
fixed; the Grafana dashboard and the PrometheusRule in ``deploy/`` use exactly these.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

import reconciler

SYNC_LABELS = ("namespace", "name")


class Metrics:
    """Every series the controller exports, in one registry (a fresh one per test, the default in production)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._reconcile_series(self.registry)
        self._gitsync_series(self.registry)
        self._process_series(self.registry)
        self._chart_series(self.registry)
        self._decryption_counts: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self.registry.register(_DecryptionCollector(lambda: self._decryption_counts()))
        self.build_info.labels(reconciler.__version__).set(1)

    def _reconcile_series(self, r: CollectorRegistry) -> None:
        """How reconciles go: duration, results, fetch time, policy verdicts."""
        self.reconcile_duration = Histogram(
            "reconciler_reconcile_duration_seconds",
            "Time one reconcile of a GitSync took (fetch, render, plan, apply, prune, health).",
            SYNC_LABELS,
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.reconciles = Counter(
            "reconciler_reconcile", "Reconciles by result (success or failure).", (*SYNC_LABELS, "result"), registry=r
        )
        self.fetch_duration = Histogram(
            "reconciler_git_fetch_duration_seconds",
            "Time to fetch the source revision.",
            SYNC_LABELS,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.policy_violations = Gauge(
            "reconciler_policy_violations",
            "Policy violations in the last revision, per policy.",
            (*SYNC_LABELS, "policy"),
            registry=r,
        )

    def _gitsync_series(self, r: CollectorRegistry) -> None:
        """The state of each GitSync now: what an alert rule compares."""
        self.ready = Gauge("reconciler_gitsync_ready", "1 if the GitSync is Ready.", SYNC_LABELS, registry=r)
        self.stalled = Gauge("reconciler_gitsync_stalled", "1 if the GitSync is Stalled.", SYNC_LABELS, registry=r)
        self.drift = Gauge(
            "reconciler_drift_objects", "Managed objects that differ from git right now.", SYNC_LABELS, registry=r
        )
        self.last_success = Gauge(
            "reconciler_last_success_timestamp_seconds",
            "Unix time of the last successful sync.",
            SYNC_LABELS,
            registry=r,
        )
        self.interval = Gauge(
            "reconciler_gitsync_interval_seconds", "The GitSync's spec.interval.", SYNC_LABELS, registry=r
        )
        self.revision = Gauge(
            "reconciler_applied_revision_info",
            "The applied revision (value 1).",
            (*SYNC_LABELS, "revision"),
            registry=r,
        )
        self.managed = Gauge(
            "reconciler_managed_objects", "Objects in the GitSync's inventory.", SYNC_LABELS, registry=r
        )

    def _process_series(self, r: CollectorRegistry) -> None:
        """The controller itself: API traffic, webhooks, the EKS check, its version."""
        self.api_requests = Counter(
            "reconciler_api_requests", "Kubernetes API requests by verb.", ("verb",), registry=r
        )
        self.api_calls = Counter(
            "reconciler_api_calls",
            "Kubernetes API requests by Kubernetes verb (get, list, watch, apply, apply-dry-run, create, "
            "patch, update, delete) and resource[/subresource]: never an object's name.",
            ("verb", "resource"),
            registry=r,
        )
        self.webhook_requests = Counter(
            "reconciler_webhook_requests",
            "Webhook requests by provider and result.",
            ("provider", "result"),
            registry=r,
        )
        self.eks_drift = Gauge(
            "reconciler_eks_drift",
            "Fields of the EKS cluster that differ from its eksctl ClusterConfig, per resource kind "
            "(cluster, nodegroup, addon); see docs/eks.md.",
            ("cluster", "kind"),
            registry=r,
        )
        self.build_info = Gauge(
            "reconciler_build_info", "Version of the controller (value 1).", ("version",), registry=r
        )

    def _chart_series(self, r: CollectorRegistry) -> None:
        """A GitSync's chart (spec.helm): how often helm ran, how long it took, what the chart cost on the wire."""
        self.helm_renders = Counter(
            "reconciler_helm_renders",
            "Chart renders of a GitSync by cache result (hit: no helm run; miss: helm template ran).",
            (*SYNC_LABELS, "cache"),
            registry=r,
        )
        self.helm_render_duration = Histogram(
            "reconciler_helm_render_duration_seconds",
            "Time to resolve and render a GitSync's chart (a cache hit included).",
            SYNC_LABELS,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.chart_requests = Counter(
            "reconciler_chart_requests",
            "HTTP requests sent to Helm repositories and OCI registries for a GitSync's chart "
            "(0 on a reconcile that found its chart in the chart cache).",
            SYNC_LABELS,
            registry=r,
        )

    def count_decryptions(self, counts: Callable[[], tuple[int, int]]) -> None:
        """Export the process's decryptor: ``counts()`` gives (sops runs, cache hits) so far.

        Read at scrape time from the one decryptor every GitSync shares, without labels: a
        per-file or per-key label could carry a name a Secret's author chose, and the figures
        that matter (a no-op reconcile adds no decryption) are process-wide."""
        self._decryption_counts = counts

    @staticmethod
    def drop_series(metric: Gauge, namespace: str, name: str) -> None:
        """Remove every series of one GitSync from a metric with extra labels (revision, policy)."""
        for labels in list(metric._metrics):  # prometheus_client has no public lookup by label prefix
            if labels[:2] == (namespace, name):
                metric.remove(*labels)

    def set_revision(self, namespace: str, name: str, revision: str) -> None:
        """One series per GitSync: drop the previous revision's series first."""
        self.drop_series(self.revision, namespace, name)
        self.revision.labels(namespace, name, revision).set(1)

    def forget(self, namespace: str, name: str) -> None:
        """A deleted GitSync leaves no stale series behind."""
        for metric in (
            self.ready,
            self.stalled,
            self.drift,
            self.last_success,
            self.interval,
            self.managed,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, name)
        for labelled in (self.revision, self.policy_violations):
            self.drop_series(labelled, namespace, name)


class _DecryptionCollector(Collector):
    """``reconciler_decryptions_total`` and ``reconciler_decryption_cache_hits_total``."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        runs, hits = self._counts()
        yield CounterMetricFamily(
            "reconciler_decryptions",
            "SOPS files decrypted by running sops (each makes one KMS call per KMS data key it holds).",
            value=runs,
        )
        yield CounterMetricFamily(
            "reconciler_decryption_cache_hits",
            "SOPS files answered from the in-memory plaintext cache (no sops run, no KMS call).",
            value=hits,
        )
