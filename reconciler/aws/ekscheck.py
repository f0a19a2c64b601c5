"""EKS drift of the cluster itself, checked by the controller (``reconciler run --eks-config``).

The ClusterConfig is a controller setting, not a GitSync: it names one cluster, is never
applied to an API server, and correcting it needs the controller's AWS identity, which
tenants' GitSyncs must not borrow.  So the check runs beside the GitSync workers, on the
leader only, and reports like GitSync drift does: a metric and DriftDetected/DriftCorrected
Events.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from reconciler.aws import clusterconfig, eks, eksupdate
from reconciler.aws.errors import AwsError
from reconciler.kube.events import EventRecorder
from reconciler.render import document
from reconciler.render.errors import ManifestError
from reconciler.report.metrics import Metrics

log = logging.getLogger("reconciler.gitsync.loop")
MIN_POLL_INTERVAL = 1.0
"""Seconds: the least time between DescribeUpdate calls (and between checks); 0 would be a busy loop."""


class EksDriftMode(StrEnum):
    """``run --eks-drift``: what a difference between the cluster and its ClusterConfig does."""

    WARN = "warn"  # metric, Event and log line only
    CORRECT = "correct"  # also send the in-place updates `reconciler eks sync` would


@dataclass(frozen=True)
class EksOptions:
    """EKS drift of the cluster itself (``run --eks-config``): a ClusterConfig file, e.g. mounted from a ConfigMap."""

    config: Path
    """The ClusterConfig file (--eks-config); no default."""
    variables: dict[str, str]
    """``${NAME}`` values for it (--eks-substitute); no default (empty: none)."""
    _: dataclasses.KW_ONLY
    interval: float = 600.0
    """Seconds between checks (--eks-interval); default 10m, never under :data:`MIN_POLL_INTERVAL`."""
    mode: EksDriftMode = EksDriftMode.WARN
    """--eks-drift; default warn: report only, never send an update."""
    region: str | None = None
    """AWS region (--eks-region); default None: the ClusterConfig's metadata.region."""
    wait: eksupdate.Wait = dataclasses.field(default_factory=eksupdate.Wait)
    """How an update sent in correct mode is followed; default eksupdate.Wait()'s."""

    def __post_init__(self) -> None:
        """Clamp the intervals: whoever builds the options, the controller never hammers the EKS API."""
        if self.wait.interval < MIN_POLL_INTERVAL:
            object.__setattr__(self, "wait", dataclasses.replace(self.wait, interval=MIN_POLL_INTERVAL))
        object.__setattr__(self, "interval", max(self.interval, MIN_POLL_INTERVAL))


class EksDriftChecker:
    """Compares the EKS cluster with its ClusterConfig on an interval and reports like GitSync drift.

    The involved object of its Events is the controller's own Pod (``POD_NAME`` and
    ``POD_NAMESPACE`` from the Downward API, as deploy/deployment.yaml sets them): the
    ClusterConfig is a controller setting, not a GitSync.  Outside a Pod it only logs.
    """

    def __init__(self, opts: EksOptions, metrics: Metrics, events: EventRecorder) -> None:
        self.opts, self.metrics, self.events = opts, metrics, events
        self.drifted = 0
        self._clients: dict[str, Any] = {}  # per region, made once: boto3's default session is not thread-safe
        pod, ns = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
        self.pod = (
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": ns}} if pod and ns else None
        )

    def _event(self, type_: str, reason: str, note: str) -> None:
        (log.warning if type_ == "Warning" else log.info)(note, extra={"reason": reason})
        if self.pod is not None:
            self.events.emit(self.pod, type_, reason, note, action="CheckEKSDrift")

    def check(self) -> None:
        """One check (and, in correct mode, one correction); AWS and file errors become Events, not exceptions."""
        where = str(self.opts.config)
        try:
            cfg = clusterconfig.parse(document.load(self.opts.config, self.opts.variables), where)
            if self.opts.region:
                cfg = dataclasses.replace(cfg, region=self.opts.region)
            client = self._clients.get(cfg.region) or self._clients.setdefault(cfg.region, eks.client(cfg.region))
            if self.opts.mode == EksDriftMode.CORRECT:
                res = eks.sync(client, cfg, wait=self.opts.wait)
            else:
                drift = eks.check(client, cfg)
                res = eks.EksSyncResult(before=drift, after=drift)
        except (ManifestError, clusterconfig.ClusterConfigError) as e:
            self._event("Warning", "RenderFailed", f"EKS drift check: cannot read the ClusterConfig: {e}")
            return
        except eks.SyncError as e:  # the drift was found; only correcting it failed
            self._report(cfg, e.result, corrected=False)
            self._event("Warning", "SyncFailed", f"EKS drift check ({self.opts.mode}): {e}")
            return
        except AwsError as e:
            self._event("Warning", "SyncFailed", f"EKS drift check ({self.opts.mode}): {e}")
            return
        self._report(cfg, res, corrected=True)

    def _report(self, cfg: clusterconfig.ClusterConfig, res: eks.EksSyncResult, *, corrected: bool) -> None:
        """Gauge and Events for one check; ``corrected`` False: a correction failed, so ``after`` is unknown
        (the gauge keeps the drift found before, and no DriftCorrected is claimed)."""
        after = res.after
        for kind, n in after.counts_by_kind().items():
            self.metrics.eks_drift.labels(cfg.name, kind).set(n)
        head, where = f"EKS {cfg.name} ({cfg.region})", str(self.opts.config)
        if res.before.findings:
            what = "; ".join(f"{f.resource} {f.field} ({f.action})" for f in res.before.findings[:10])
            self._event(
                "Warning", "DriftDetected", f"{head}: {len(res.before.findings)} difference(s) from {where}: {what}"
            )
        if corrected and res.applied:
            what = "; ".join(f"{a.change.call} {a.change.resource}" for a in res.applied)
            self._event("Normal", "DriftCorrected", f"{head}: corrected with {what}; {len(after.findings)} left")
        elif corrected and self.drifted and not after.findings:
            self._event("Normal", "DriftCorrected", f"{head}: matches {where} again")
        self.drifted = len(after.findings)
