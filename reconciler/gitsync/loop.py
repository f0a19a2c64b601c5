"""The controller loop: watch GitSyncs, reconcile each on its own schedule.

One watch keeps every GitSync in memory; a scheduler (:mod:`reconciler.gitsync.schedule`) hands
due GitSyncs to a bounded pool of workers, never two workers for one GitSync. A spec change (a
new generation), a new ``requested-at`` annotation, a deletion, or a dependency becoming Ready
reconciles at once; otherwise a GitSync is due again after its interval (with jitter, so a fleet
of GitSyncs does not hit the git server in lockstep), or after an exponential backoff from its
retryInterval when it failed.

One worker's turn on one GitSync (:meth:`Controller.work`) reads as its steps: read the spec,
finalize a deleted GitSync (:mod:`reconciler.gitsync.finalize`), hold the finalizer, reconcile
(:mod:`reconciler.gitsync.reconcile`), hand the result to the drift watch and Alertmanager,
and compute when it is due again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.aws import ekscheck
from reconciler.gitsync import fairness, massprune, servers
from reconciler.gitsync.drift import Drift, DriftWatcher
from reconciler.gitsync.driftreport import DriftReporter
from reconciler.gitsync.errors import InvalidSpecError, UnexpectedError
from reconciler.gitsync.finalize import Finalizer, set_finalizer
from reconciler.gitsync.handles import ClientFactory, ClientHandles
from reconciler.gitsync.options import ControllerOptions
from reconciler.gitsync.push import PushRequests, QueuedPushes
from reconciler.gitsync.reconcile import Reconciler, SyncState
from reconciler.gitsync.results import ReconcileResult
from reconciler.gitsync.schedule import Key, Scheduler
from reconciler.gitsync.sharding import ShardFollower, shard_options
from reconciler.gitsync.shards import ShardLeases
from reconciler.gitsync.spec import (
    FINALIZER,
    GROUP,
    REQUESTED_AT,
    VERSION,
    DriftMode,
    GitSyncSpec,
    SpecError,
    check_timeout,
    gitsync_path,
    parse,
)
from reconciler.kube import discovery, watch
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.events import EventRecorder
from reconciler.kube.lease import LeaderElector
from reconciler.kube.ssa import FIELD_MANAGER
from reconciler.report import conditions as cond
from reconciler.report import httpserve
from reconciler.report.alertmanager import Alert, AlertmanagerClient
from reconciler.report.metrics import Metrics
from reconciler.sync.objects import ObjectId

log = logging.getLogger("reconciler.gitsync.loop")
MAX_BACKOFF = 600.0
"""Seconds: the longest a failing GitSync waits before it is tried again."""
__all__ = ["MAX_BACKOFF", "Controller", "ControllerOptions", "Key"]


class Controller:
    """The GitSync controller of one process: its watch, scheduler, workers and listeners."""

    def __init__(
        self,
        kube: Kube,
        opts: ControllerOptions,
        *,
        metrics: Metrics | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.kube, self.opts = kube, opts
        self.metrics = metrics or Metrics()
        kube.on_request = lambda verb: self.metrics.api_requests.labels(verb).inc()
        kube.on_resource = lambda verb, resource: self.metrics.api_calls.labels(verb, resource).inc()
        kube.limit(qps=opts.kube_api_qps, burst=opts.kube_api_burst)
        self.mapper = discovery.RestMapper(kube)
        self.events = EventRecorder(kube, opts.identity)
        self.tenancy = opts.effective_tenancy()
        self.handles = ClientHandles(kube, self.mapper, tenancy=self.tenancy, factory=client_factory)
        self.reconciler = Reconciler(
            kube,
            self.mapper,
            metrics=self.metrics,
            events=self.events,
            cache_dir=opts.cache_dir,
            clients=self.handles.clients_for,
            policies_dir=opts.policies_dir,
            readers=self.handles.reader_for,
            tenancy=self.tenancy,
            max_prune_ratio=opts.max_prune_ratio,
            fence=(lambda ns, n: self.sharding.deadline(ns, n) if self.sharding else 0.0) if opts.shards else None,
        )
        self.finalizer = Finalizer(
            metrics=self.metrics, appliers=self.handles.appliers, reader=self.handles.reader, mapper=self.mapper
        )
        self.objects: dict[Key, dict[str, Any]] = {}
        self.states: dict[Key, SyncState] = {}
        self._seen: set[Key] = set()
        self.synced = threading.Event()
        self.stop_event = threading.Event()
        self.elector: LeaderElector | None = None
        self.sharding = self._sharding() if opts.shards else None
        self.scheduler = self._scheduler()
        self.pushes = QueuedPushes(
            may_take=lambda key: self.synced.is_set() and self._leading() and self._owns(key),
            schedule=lambda key: self.scheduler.schedule(key, 0),
        )
        self.drift = DriftWatcher(
            self.handles.drift_kube(), field_manager=FIELD_MANAGER, on_change=self._on_drift, stop=self.stop_event
        )
        self.reconciler.held = self.drift  # health reads the watch's events rather than polling
        self.alerts = AlertmanagerClient(opts.alertmanager_url) if opts.alertmanager_url else None
        self.drift_reports = DriftReporter(
            kube=kube,
            metrics=self.metrics,
            events=self.events,
            alerts=self.alerts,
            write_status=self.reconciler._patch_status,
        )
        self.eks = ekscheck.EksDriftChecker(opts.eks, self.metrics, self.events) if opts.eks else None
        self.servers: list[httpserve.Server] = []

    def _scheduler(self) -> Scheduler:
        o = self.opts
        limit = o.max_concurrent_per_namespace or fairness.default_limit(
            o.workers, single_namespace=o.namespace is not None
        )
        return Scheduler(workers=o.workers, per_namespace=limit, stop=self.stop_event, active=self._leading)

    def _sharding(self) -> ShardFollower:
        o = self.opts
        options = shard_options(o.shards, namespace=o.lease_namespace, identity=o.identity, duration=o.lease_duration)
        return ShardFollower(
            ShardLeases(self.kube, options=options, registry=self.metrics.registry),
            known=lambda: list(self.objects),
            take=lambda key: self.scheduler.schedule(key, 0),
            release=self._release_shard,
            stop=self.stop_event,
        )

    def _owns(self, key: Key) -> bool:
        """Whether this replica reconciles GitSync ``key`` now: always without shards."""
        return self.sharding is None or self.sharding.owns(*key)

    def _release_shard(self, key: Key) -> None:
        """Another replica reconciles ``key`` now: its drift watch, state and series go here."""
        self.drift.forget(key)
        self.states.pop(key, None)
        self.metrics.forget(*key)

    def _leading(self) -> bool:
        """Whether this replica may reconcile: it holds the lease, or runs without leader election."""
        return self.elector is None or self.elector.leading()

    # ------------------------------------------------------------------ watch

    def _wants_now(self, obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
        """A change that asks for a reconcile; our own status updates do not."""
        md, st = obj.get("metadata") or {}, obj.get("status") or {}
        old_md = (old or {}).get("metadata") or {}
        if old is None or md.get("deletionTimestamp") or massprune.approved_anew(obj, old):
            return True
        if md.get("generation") != old_md.get("generation") or md.get("finalizers") != old_md.get("finalizers"):
            return True
        req = (md.get("annotations") or {}).get(REQUESTED_AT)
        old_req = (old_md.get("annotations") or {}).get(REQUESTED_AT)
        return bool(req and req != old_req and req != st.get("lastHandledRequestedAt"))

    def on_event(self, type_: str, obj: dict[str, Any]) -> None:
        if type_ == "RELISTED" and not obj:
            gone = set(self.objects) - self._seen
            for key in gone:
                self.objects.pop(key, None)
                self._forget(key, deleted=True)
            self._seen = set()
            self.synced.set()
            return
        md = obj.get("metadata") or {}
        key = (str(md.get("namespace")), str(md.get("name")))
        if type_ == "DELETED":
            self.objects.pop(key, None)
            self._forget(key, deleted=True)
            return
        old = self.objects.get(key)
        self.objects[key] = obj
        if type_ == "RELISTED":
            self._seen.add(key)
        if self._wants_now(obj, old) and self._owns(key):
            self.scheduler.schedule(key, 0)
        if old is not None and not cond.is_ready(old) and cond.is_ready(obj):
            self._dependency_ready(key)

    def _known(self) -> list[dict[str, Any]] | None:
        """The GitSyncs the watch holds, once it has listed them all (None before)."""
        return list(self.objects.values()) if self.synced.is_set() else None

    def _dependency_ready(self, key: Key) -> None:
        """GitSync ``key`` became Ready: the GitSyncs that depend on it may go now."""
        for k, o in list(self.objects.items()):
            deps = (o.get("spec") or {}).get("dependsOn") or []
            if any(d.get("name") == key[1] and (d.get("namespace") or k[0]) == key[0] for d in deps):
                self.scheduler.schedule(k, 0)

    def _watch(self) -> None:
        path = gitsync_path(self.opts.namespace)
        watch.watch(
            self.kube,
            path,
            handler=self.on_event,
            stop=self.stop_event,
            kind="GitSync",
            api_version=f"{GROUP}/{VERSION}",
        )

    # ------------------------------------------------------------------ one GitSync

    def _ready_of(self, namespace: str, name: str) -> bool:
        obj = self.objects.get((namespace, name))
        return obj is not None and cond.is_ready(obj)

    def work(self, key: Key) -> float | None:
        """Reconcile one GitSync; returns the delay until it is due again (None: only on change)."""
        obj = self.objects.get(key)
        if obj is None or not self._owns(key):  # not ours (any more): its shard's owner reconciles it
            return None
        spec, spec_error = self._read_spec(obj)
        if obj["metadata"].get("deletionTimestamp"):
            return self._finalize(key, obj, spec)
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            set_finalizer(self.kube, obj, present=True)  # the MODIFIED event brings us back
            return None
        if spec is None:
            self.reconciler.fail(obj, InvalidSpecError(spec_error, stage=None))
            return None
        if spec.suspend:
            log.info("suspended; not reconciling", extra={"gitsync": f"{key[0]}/{key[1]}"})
            self._forget(key, deleted=False)
            return None
        state = self.states.setdefault(key, SyncState())
        if not self._leading():
            return None  # lost the lease: the new leader reconciles
        out = self._reconcile(key, obj, spec=spec, state=state)
        self._hand_over(key, obj, out=out, spec=spec, state=state)
        return self._next_delay(spec, out, state)

    def _read_spec(self, obj: dict[str, Any]) -> tuple[GitSyncSpec | None, str]:
        """The typed spec, or None and why it is refused (a deleted GitSync is finalized either way)."""
        try:
            spec = parse(obj)
            check_timeout(spec, maximum=self.opts.max_timeout)
        except SpecError as e:
            return None, str(e)
        return spec, ""

    def _finalize(self, key: Key, obj: dict[str, Any], spec: GitSyncSpec | None) -> float | None:
        """A deleted GitSync: prune or orphan (finalize.py), then let the deletion go on."""
        if FINALIZER not in (obj["metadata"].get("finalizers") or []):
            return None
        self._forget(key, deleted=True)  # no drift reports about objects we are about to prune
        err = self.finalizer.finalize(obj, spec)
        if err:
            log.error(err, extra={"gitsync": f"{key[0]}/{key[1]}", "reason": "FinalizeFailed"})
            return 30.0
        set_finalizer(self.kube, obj, present=False)
        return None

    def _reconcile(self, key: Key, obj: dict[str, Any], *, spec: GitSyncSpec, state: SyncState) -> ReconcileResult:
        """The reconcile, with the drift watch paused (our own applies are not drift), and an
        unexpected error reported as a failed sync."""
        req = self.pushes.request_of(key, obj)
        state.watched = self.drift.pause(key)  # the watches may vouch for live state: see inputs.unchanged
        try:
            return self.reconciler.reconcile(obj, spec, state=state, ready_of=self._ready_of, handled_request=req)
        except Exception as e:
            self.drift.resume(key)
            # Its text may carry a URL with a token or a Secret's value: status, Events, alerts and
            # the log get it scrubbed; the traceback only at DEBUG.
            text = self.reconciler.scrub(state, f"{type(e).__name__}: {e}")
            log.debug("unexpected error", exc_info=True, extra={"gitsync": f"{key[0]}/{key[1]}"})
            return self.reconciler.fail(obj, UnexpectedError(text, stage=None))

    def _hand_over(
        self, key: Key, obj: dict[str, Any], *, out: ReconcileResult, spec: GitSyncSpec, state: SyncState
    ) -> None:
        """The result goes to the drift watch (the new baseline) and to Alertmanager."""
        # The drift watch sees the management cluster only: a remote target is corrected at each interval.
        watch_drift = spec.drift_mode != DriftMode.OFF and spec.target is None
        if not (out.ok and out.tracked is not None and watch_drift):
            self.drift.resume(key)  # on success, track() below swaps in the new baseline and resumes
        if self.alerts and not out.waiting:
            self._alert(key, obj, ok=out.ok)
        if out.ok and out.tracked is not None:
            if not watch_drift:
                self.drift.forget(key)
            else:
                self.drift.track(key, out.tracked, complete=out.complete)
                if state.drifted:
                    self._on_drift(key, {})  # the sync re-applied what had drifted

    def _alert(self, key: Key, obj: dict[str, Any], *, ok: bool) -> None:
        assert self.alerts is not None
        if ok:
            self.alerts.resolve("GitSyncFailing", *key)
            return
        ready = cond.get((obj.get("status") or {}).get("conditions") or [], cond.READY) or {}
        summary = f"GitSync {key[0]}/{key[1]} is failing"
        self.alerts.fire(Alert("GitSyncFailing", key[0], key[1], "critical", summary, str(ready.get("message", ""))))

    @staticmethod
    def _next_delay(spec: GitSyncSpec, out: ReconcileResult, state: SyncState) -> float | None:
        """The interval (jittered) after a success (retryInterval if its status could not be
        written), none while Stalled, a short wait for a dependency, an exponential backoff from
        retryInterval after a failure."""
        if out.ok and out.unwritten:  # applied, but status still says otherwise: try again soon
            return min(spec.retry_interval, spec.interval)
        if out.ok:
            state.failures = 0
            return spec.interval * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not crypto
        if out.stalled:
            return None
        if out.waiting:
            return min(spec.retry_interval, 10.0)
        state.failures += 1
        backoff: float = spec.retry_interval * 2.0 ** (state.failures - 1)
        return min(backoff, max(spec.interval, spec.retry_interval), MAX_BACKOFF)

    def _forget(self, key: Key, *, deleted: bool) -> None:
        """Stop watching, alerting and (if deleted) exporting series for a GitSync that is gone or suspended."""
        self.drift.forget(key)
        if self.alerts:
            self.alerts.resolve("GitSyncDriftDetected", *key)
            self.alerts.resolve("GitSyncFailing", *key)
        with contextlib.suppress(KeyError):  # a suspended GitSync is not stale
            self.metrics.interval.remove(*key)
        if deleted:
            self.states.pop(key, None)  # its source is shared: the checkouts go with their last reader
            self.metrics.forget(*key)

    def _on_drift(self, key: Key, drifted: dict[ObjectId, Drift]) -> None:
        """Report a change in a GitSync's drifted objects, and correct it at once in ``correct`` mode."""
        cached = self.objects.get(key)
        if cached is None or cached["metadata"].get("deletionTimestamp") or not self._leading() or not self._owns(key):
            return
        mode = self.drift_reports.report(key, drifted, self.states.setdefault(key, SyncState()))
        if drifted and mode == DriftMode.CORRECT:
            self.scheduler.schedule(key, 0)  # after our patch, so the correcting sync's status is not overwritten

    def _work(self, key: Key) -> None:
        """A worker's turn: :meth:`work`, its errors logged (scrubbed), and the GitSync scheduled again."""
        delay: float | None = 30.0
        gid = f"{key[0]}/{key[1]}"
        try:
            delay = self.work(key)
        except (KubeError, UnreachableError) as e:
            text = self.reconciler.scrub(self.states.get(key), str(e))
            log.error(f"GitSync {gid}: {text}", extra={"gitsync": gid})
        except Exception as e:
            text = self.reconciler.scrub(self.states.get(key), f"{type(e).__name__}: {e}")
            log.error(f"GitSync {gid}: unexpected error: {text}", extra={"gitsync": gid})
            log.debug("unexpected error", exc_info=True, extra={"gitsync": gid})
        finally:
            self.scheduler.done(key, delay)

    # ------------------------------------------------------------------ process

    def run(self) -> None:
        """Serve metrics and probes, win the lease (if asked), then watch and reconcile until stopped.

        The listeners stay up until every worker has finished (probes answer during a graceful
        shutdown) and are closed on the way out.
        """
        try:
            self._run()
        finally:
            for server in self.servers:
                server.stop()

    def _run(self) -> None:
        self.servers = servers.start(
            metrics=self.metrics,
            metrics_addr=self.opts.metrics_addr,
            health_addr=self.opts.health_addr,
            ready=lambda: self.synced.is_set() or not self._leading(),
            webhook_addr=self.opts.webhook_addr,
            webhook_secret=self.opts.webhook_secret,
            on_push=PushRequests(self.kube, self.opts.namespace, take=self.pushes.take, known=self._known),
        )
        if self.opts.leader_elect and not self._elect():
            return
        shards = self.sharding.start() if self.sharding else None
        threading.Thread(target=self._watch, name="watch-gitsyncs", daemon=True).start()
        if self.alerts:
            threading.Thread(target=self._refresh_alerts, name="alerts", daemon=True).start()
        if self.eks:
            threading.Thread(target=self._eks_loop, name="eks-drift", daemon=True).start()
        self._dispatch()
        self.reconciler.shared.close()  # the workers are done: no checkout is read any more
        if shards is not None:
            shards.join(30)  # the shards are handed back (it started at the stop, before the workers ended)
        if self.elector is not None:
            self.elector.stop()

    def _elect(self) -> bool:
        """Start leader election and wait for the lease; False when stopped first."""
        self.elector = LeaderElector(
            self.kube,
            namespace=self.opts.lease_namespace,
            name=self.opts.lease_name,
            identity=self.opts.identity,
            duration=self.opts.lease_duration,
            renew=max(1.0, self.opts.lease_duration / 3),
        )
        threading.Thread(target=self.elector.run, name="leader-election", daemon=True).start()
        log.info("waiting for leadership", extra={"reason": "LeaderElection"})
        while not self.elector.is_leader.wait(1.0):
            if self.stop_event.is_set():
                return False
        return True

    def _dispatch(self) -> None:
        """Hand due GitSyncs to the worker pool until stopped (or the lease is lost); waits for the workers."""
        with ThreadPoolExecutor(max_workers=self.opts.workers, thread_name_prefix="gitsync") as pool:
            while not self.stop_event.is_set():
                if not self._leading():
                    log.error("lost leadership: exiting so a restart rejoins as a standby")
                    self.stop_event.set()
                    break
                key = self.scheduler.next_due()
                if key is not None:
                    pool.submit(self._work, key)

    def _refresh_alerts(self) -> None:
        while not self.stop_event.wait(60.0):
            if self.alerts:
                self.alerts.refresh()

    def _eks_loop(self) -> None:
        assert self.eks is not None
        delay = 0.0
        while not self.stop_event.wait(delay):
            delay = self.eks.opts.interval
            if self._leading():
                try:
                    self.eks.check()
                except Exception:  # a bug must not end the loop: the next interval tries again
                    log.exception("EKS drift check: unexpected error", extra={"reason": "SyncFailed"})

    def stop(self) -> None:
        self.stop_event.set()
        self.scheduler.wake()
