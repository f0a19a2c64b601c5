"""The controller loop: watch GitSyncs, reconcile each on its own schedule.

One watch keeps every GitSync in memory; a scheduler hands due GitSyncs to a bounded
pool of workers, never two workers for one GitSync. A spec change (a new generation),
a new ``requested-at`` annotation, a deletion, or a dependency becoming Ready
reconciles at once; otherwise a GitSync is due again after its interval (with jitter,
so a fleet of GitSyncs does not hit the git server in lockstep), or after an
exponential backoff from its retryInterval when it failed.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client import make_wsgi_app

from reconciler.aws import ekscheck
from reconciler.aws import target as eks_target
from reconciler.gitsync import fairness
from reconciler.gitsync.clientcache import ClientCache
from reconciler.gitsync.drift import Drift, DriftWatcher
from reconciler.gitsync.reconcile import Reconciler, SyncState
from reconciler.gitsync.spec import (
    FINALIZER,
    GROUP,
    REQUESTED_AT,
    VERSION,
    WEBHOOK_STAMP,
    EksTarget,
    GitSyncSpec,
    SpecError,
    check_timeout,
    gitsync_path,
    parse,
)
from reconciler.gitsync.tenancy import Tenancy, parse_grant, service_account_user
from reconciler.kube import discovery, watch
from reconciler.kube.client import MERGE_PATCH, Kube, KubeError, UnreachableError
from reconciler.kube.events import EventRecorder
from reconciler.kube.lease import LeaderElector
from reconciler.kube.ssa import FIELD_MANAGER
from reconciler.report import conditions as cond
from reconciler.report import httpserve
from reconciler.report.alertmanager import Alert, AlertmanagerClient
from reconciler.report.metrics import Metrics
from reconciler.source import webhook
from reconciler.sync.objects import ObjectId

log = logging.getLogger("reconciler.gitsync.loop")
Key = tuple[str, str]
MAX_BACKOFF = 600.0

ClientFactory = Callable[[EksTarget | None, dict[str, str]], Kube]
"""Builds a handle on the management cluster (target None) or a GitSync's remote target,
sending extra headers (impersonation) with every request."""


def client_factory(local: Callable[[dict[str, str]], Kube]) -> ClientFactory:
    """The production factory: ``local`` for this cluster, EKS targets from their name and region."""

    def make(target: EksTarget | None, headers: dict[str, str]) -> Kube:
        if target is None:
            return local(headers)
        return eks_target.connect(target.cluster, target.region, headers=headers)

    return make


@dataclass(frozen=True)
class Options:
    namespace: str | None = None  # watch one namespace; None = all
    workers: int = 4
    cache_dir: Path = Path("/tmp/gitops-reconciler")  # noqa: S108 - overridden by --cache-dir
    leader_elect: bool = False
    lease_namespace: str = "reconciler-system"
    lease_name: str = "gitops-reconciler-leader"
    lease_duration: float = 15.0
    identity: str = "reconciler"
    metrics_addr: str = ":8080"
    health_addr: str = ":8081"
    webhook_addr: str = ""
    webhook_secret: bytes = b""
    alertmanager_url: str = ""
    policies_dir: Path | None = None
    eks: ekscheck.EksOptions | None = None
    allow_eks_targets: tuple[str, ...] = ()  # CLUSTER/REGION globs a spec.target may name; none by default
    max_concurrent_per_namespace: int = 0  # 0: fairness.default_limit (half the workers)
    max_timeout: float = 3600.0  # a GitSync with a longer spec.timeout is refused (Stalled)
    tenancy: Tenancy = field(default_factory=Tenancy)  # lock-down flags (docs/security.md); default: open

    def effective_tenancy(self) -> Tenancy:
        """``tenancy`` with the old-form ``allow_eks_targets`` (no ``NAMESPACE=``) added to its grants."""
        legacy = tuple(parse_grant(p, "--allow-eks-target", legacy=True) for p in self.allow_eks_targets)
        return replace(self.tenancy, eks_targets=self.tenancy.eks_targets + legacy)


# What one client may cost each listener (docs/controller.md, "HTTP listeners").  Probes and
# scrapes are GETs without a body; 256 health connections leave room for a flood of idle
# ones while the kubelet's probe still gets in.  The webhook keeps its 5 MiB body limit, and
# a deadline long enough for that body over a slow link.
HEALTH_LIMITS = httpserve.Limits(read_timeout=5, deadline=15, max_body=0, max_connections=256, threads=2)
METRICS_LIMITS = httpserve.Limits(read_timeout=5, deadline=15, max_body=0, max_connections=64, threads=2)
WEBHOOK_LIMITS = httpserve.Limits(read_timeout=5, deadline=30, max_body=webhook.MAX_BODY, max_connections=64, threads=4)


class Handles(NamedTuple):
    """What a GitSync applies with; closable so the bounded client cache can drop it."""

    kube: Kube
    mapper: discovery.RestMapper

    def close(self) -> None:
        self.kube.close()


class Controller:
    def __init__(
        self,
        kube: Kube,
        opts: Options,
        metrics: Metrics | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self.kube, self.opts = kube, opts
        self.metrics = metrics or Metrics()
        kube.on_request = lambda verb: self.metrics.api_requests.labels(verb).inc()
        self.mapper = discovery.RestMapper(kube)
        self.events = EventRecorder(kube, opts.identity)
        self._client_factory = client_factory
        self._clients: ClientCache[tuple[EksTarget | None, str], Handles] = ClientCache()
        self.tenancy = opts.effective_tenancy()
        self.reconciler = Reconciler(
            kube,
            self.mapper,
            self.metrics,
            self.events,
            opts.cache_dir,
            clients=self.clients_for,
            policies_dir=opts.policies_dir,
            readers=self.reader_for,
            tenancy=self.tenancy,
        )
        self.objects: dict[Key, dict[str, Any]] = {}
        self.states: dict[Key, SyncState] = {}
        self._seen: set[Key] = set()
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._seq = itertools.count()
        self._running: set[Key] = set()
        limit = opts.max_concurrent_per_namespace or fairness.default_limit(
            opts.workers, single_namespace=opts.namespace is not None
        )
        self._slots: fairness.NamespaceSlots[tuple[float, int, Key]] = fairness.NamespaceSlots(limit)
        self._again: set[Key] = set()
        self.synced = threading.Event()
        self.stop_event = threading.Event()
        self.elector: LeaderElector | None = None
        self.drift = DriftWatcher(self._drift_kube(), FIELD_MANAGER, self._on_drift, self.stop_event)
        self.alerts = AlertmanagerClient(opts.alertmanager_url) if opts.alertmanager_url else None
        self.eks = ekscheck.EksDriftChecker(opts.eks, self.metrics, self.events) if opts.eks else None
        self.servers: list[httpserve.Server] = []

    # ------------------------------------------------------------------ scheduling

    def schedule(self, key: Key, delay: float) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._lock:
            if key in self._running:
                if delay <= 0:
                    self._again.add(key)
                return
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._seq), key))
            self._lock.notify()

    def _next_due(self) -> Key | None:
        with self._lock:
            while not self.stop_event.is_set():
                if self.elector is not None and not self.elector.is_leader.is_set():
                    return None
                now = time.monotonic()
                while self._heap:
                    due, _, top = self._heap[0]
                    if self._due.get(top) != due:
                        heapq.heappop(self._heap)  # superseded entry
                    elif due <= now and not self._slots.free(top[0]):
                        self._slots.park(top[0], heapq.heappop(self._heap))  # back when its namespace has room
                    else:
                        break
                if self._heap and self._heap[0][0] <= now and len(self._running) < self.opts.workers:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._running.add(key)
                    self._slots.take(key[0])
                    return key
                wait = self._heap[0][0] - time.monotonic() if self._heap else 1.0
                self._lock.wait(timeout=min(max(wait, 0.05), 1.0))
        return None

    def _done(self, key: Key, next_delay: float | None) -> None:
        with self._lock:
            self._running.discard(key)
            for entry in self._slots.release(key[0]):
                heapq.heappush(self._heap, entry)
            again = key in self._again
            self._again.discard(key)
            self._lock.notify()
        if again:
            self.schedule(key, 0)
        elif next_delay is not None:
            self.schedule(key, next_delay)

    # ------------------------------------------------------------------ watch

    def _wants_now(self, obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
        """A change that asks for a reconcile; our own status updates do not."""
        md, st = obj.get("metadata") or {}, obj.get("status") or {}
        old_md = (old or {}).get("metadata") or {}
        if old is None or md.get("deletionTimestamp"):
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
        if self._wants_now(obj, old):
            self.schedule(key, 0)
        if old is not None and not cond.is_ready(old) and cond.is_ready(obj):
            for k, o in list(self.objects.items()):  # a dependency became Ready: its dependents may go
                deps = (o.get("spec") or {}).get("dependsOn") or []
                if any(d.get("name") == key[1] and (d.get("namespace") or k[0]) == key[0] for d in deps):
                    self.schedule(k, 0)

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

    def _patch_finalizers(self, obj: dict[str, Any], add: bool) -> None:
        """Add or remove our finalizer on the current object (re-read on conflict, never a stale list)."""
        md = obj["metadata"]
        path = gitsync_path(md["namespace"], md["name"])
        for _ in range(5):
            cur = self.kube.get_or_none(path)
            if cur is None:
                return
            fins = [f for f in cur["metadata"].get("finalizers") or [] if f != FINALIZER]
            if add:
                fins.append(FINALIZER)
            try:
                self.kube.request(
                    "PATCH",
                    path,
                    body={"metadata": {"finalizers": fins, "resourceVersion": cur["metadata"]["resourceVersion"]}},
                    content_type=MERGE_PATCH,
                )
                return
            except KubeError as e:
                if not e.conflict:
                    raise

    def work(self, key: Key) -> float | None:
        """Reconcile one GitSync; returns the delay until it is due again (None: only on change)."""
        obj = self.objects.get(key)
        if obj is None:
            return None
        md = obj["metadata"]
        finalizers = list(md.get("finalizers") or [])
        try:
            spec = parse(obj)
            check_timeout(spec, maximum=self.opts.max_timeout)
        except SpecError as e:
            spec = None
            spec_error = str(e)
        if md.get("deletionTimestamp"):
            if FINALIZER not in finalizers:
                return None
            self._forget(key, deleted=True)  # no drift reports about objects we are about to prune
            err = self.reconciler.finalize(obj, spec)
            if err:
                log.error(err, extra={"gitsync": f"{key[0]}/{key[1]}", "reason": "FinalizeFailed"})
                return 30.0
            self._patch_finalizers(obj, add=False)
            return None
        if FINALIZER not in finalizers:
            self._patch_finalizers(obj, add=True)  # the MODIFIED event brings us back
            return None
        if spec is None:
            self.reconciler._fail(
                obj, "InvalidSpec", "SyncFailed", f"GitSync {key[0]}/{key[1]}: {spec_error}", stalled=True
            )
            return None
        if spec.suspend:
            log.info("suspended; not reconciling", extra={"gitsync": f"{key[0]}/{key[1]}"})
            self._forget(key, deleted=False)
            return None
        req = (md.get("annotations") or {}).get(REQUESTED_AT)
        state = self.states.setdefault(key, SyncState())
        if self.elector is not None and not self.elector.is_leader.is_set():
            return None  # lost the lease: the new leader reconciles
        self.drift.pause(key)
        try:
            out = self.reconciler.reconcile(obj, spec, state, self._ready_of, req)
        except Exception as e:
            self.drift.resume(key)
            # The exception's text may carry anything it was built from (a URL with a token, a
            # value read from a Secret): status, Events, alerts and the log get it scrubbed; the
            # traceback only at DEBUG.
            text = self.reconciler.scrub(state, f"{type(e).__name__}: {e}")
            log.debug("unexpected error", exc_info=True, extra={"gitsync": f"{key[0]}/{key[1]}"})
            out = self.reconciler._fail(
                obj, "ReconciliationFailed", "SyncFailed", f"GitSync {key[0]}/{key[1]}: unexpected error: {text}"
            )
        # The drift watch sees the management cluster only: a remote target is corrected at each interval.
        watch_drift = spec.drift_mode != "off" and spec.target is None
        if not (out.ok and out.tracked is not None and watch_drift):
            self.drift.resume(key)  # on success, track() below swaps in the new baseline and resumes
        if self.alerts and not out.waiting:
            if out.ok:
                self.alerts.resolve("GitSyncFailing", *key)
            else:
                ready = cond.get((obj.get("status") or {}).get("conditions") or [], cond.READY) or {}
                self.alerts.fire(
                    Alert(
                        "GitSyncFailing",
                        key[0],
                        key[1],
                        "critical",
                        f"GitSync {key[0]}/{key[1]} is failing",
                        str(ready.get("message", "")),
                    )
                )
        if out.ok and out.tracked is not None:
            if not watch_drift:
                self.drift.forget(key)
            else:
                self.drift.track(key, out.tracked)
                if state.drifted:
                    self._on_drift(key, {})  # the sync re-applied what had drifted
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

    def _forget(self, key: Key, deleted: bool) -> None:
        """Stop watching, alerting and (if deleted) exporting series for a GitSync that is gone or suspended."""
        self.drift.forget(key)
        if self.alerts:
            self.alerts.resolve("GitSyncDriftDetected", *key)
            self.alerts.resolve("GitSyncFailing", *key)
        with contextlib.suppress(KeyError):  # a suspended GitSync is not stale
            self.metrics.interval.remove(*key)
        if deleted:
            state = self.states.pop(key, None)
            if state and state.source:
                state.source.close()
            self.metrics.forget(*key)

    def _on_drift(self, key: Key, drifted: dict[ObjectId, Drift]) -> None:
        """Report a change in a GitSync's drifted objects, and correct it at once in ``correct`` mode."""
        cached = self.objects.get(key)
        if cached is None or cached["metadata"].get("deletionTimestamp"):
            return
        if self.elector is not None and not self.elector.is_leader.is_set():
            return
        md0 = cached["metadata"]
        try:  # the cache may lag our own status writes: never write back a stale conditions list
            obj = self.kube.get(gitsync_path(md0["namespace"], md0["name"]))
        except (KubeError, UnreachableError) as e:
            log.warning(f"GitSync {key[0]}/{key[1]}: cannot read it to report drift: {e}")
            return
        try:
            spec = parse(obj)
        except SpecError:
            return
        state = self.states.setdefault(key, SyncState())
        ns, name = key
        n, before = len(drifted), state.drifted
        state.drifted = n
        self.metrics.drift.labels(ns, name).set(n)
        gen = int(obj["metadata"].get("generation") or 0)
        cs = list((obj.get("status") or {}).get("conditions") or [])
        status: dict[str, Any] = {"drift": {"objects": n}}
        if n:
            what = "; ".join(f"{d.oid}: {', '.join(d.paths[:5])}" for d in list(drifted.values())[:10])
            msg = f"GitSync {ns}/{name}: {n} object(s) drifted from git: {what}"
            status["drift"]["lastDetectedAt"] = cond.now()
            status["conditions"] = cond.set_condition(cs, cond.DRIFTED, True, "DriftDetected", msg, gen)
            self.events.emit(obj, "Warning", "DriftDetected", msg, action="DetectDrift")
            log.warning(msg, extra={"gitsync": f"{ns}/{name}", "reason": "DriftDetected"})
            if self.alerts:
                self.alerts.fire(
                    Alert("GitSyncDriftDetected", ns, name, "warning", f"GitSync {ns}/{name} has drifted", msg)
                )
        elif before:
            msg = f"GitSync {ns}/{name}: drift corrected; live state matches git again"
            status["conditions"] = cond.set_condition(cs, cond.DRIFTED, False, "DriftCorrected", msg, gen)
            self.events.emit(obj, "Normal", "DriftCorrected", msg, action="CorrectDrift")
            log.info(msg, extra={"gitsync": f"{ns}/{name}", "reason": "DriftCorrected"})
            if self.alerts:
                self.alerts.resolve("GitSyncDriftDetected", ns, name)
        else:
            return
        self.reconciler._patch_status(obj, status)
        if n and spec.drift_mode == "correct":
            self.schedule(key, 0)  # after our patch, so the correcting sync's status is not overwritten

    def _drift_kube(self) -> Kube:
        """Who watches managed objects for drift: the platform ServiceAccount when one is set.

        The watches are cluster-wide per kind and filtered by the owner label, so the controller's
        own narrow identity (no list/watch on arbitrary kinds) cannot hold them. The platform
        identity reads only objects some GitSync labelled, and a GitSync's drift report names
        only paths of objects its own (impersonated) sync applied: docs/security.md.
        """
        sa = self.tenancy.platform_service_account
        if sa is None or self._client_factory is None:
            return self.kube
        kube = self._client_factory(None, {"Impersonate-User": service_account_user(*sa)})
        kube.on_request = self.kube.on_request
        return kube

    def reader_for(self, namespace: str, spec: GitSyncSpec) -> Kube | None:
        """The handle a GitSync's reads in this cluster go through: its Secrets and ConfigMaps
        (secretRef, substituteFrom) and, for a GitSync without a target, its inventory.

        The GitSync's own identity (impersonated), so a tenant reads only what its ServiceAccount
        may read, even in its own namespace. None: the controller's own (no identity to act as).
        """
        user = self.tenancy.identity(namespace, spec)
        if self._client_factory is None or not user:
            return None
        return self._cached(None, user)[0]

    def clients_for(self, namespace: str, spec: GitSyncSpec) -> tuple[Kube, discovery.RestMapper] | None:
        """The handle a GitSync applies and prunes with; None means the controller's own.

        Another one when the GitSync acts as a ServiceAccount (its own serviceAccountName, or the
        one --default-service-account / --platform-service-account give it: RBAC limits what it
        may apply) or a remote target, or both.  One per (target, identity), kept for the life
        of the process, so a remote cluster costs one DescribeCluster, one connection pool and
        one discovery, not one per reconcile (the most recently used ``clientcache.DEFAULT_SIZE``
        of them: the least recently used is closed).  Raises :class:`AwsError` when a target cannot be
        reached, and :class:`TargetNotAllowedError` (before any AWS call) when ``--allow-eks-target``
        does not admit it for the GitSync's namespace: a tenant must not borrow the controller's
        AWS identity for any cluster that identity can reach.
        """
        user = self.tenancy.identity(namespace, spec)
        if spec.target is not None:
            # Checked before anything is contacted: the target would be reached with the controller's identity.
            self.tenancy.check_target(namespace, spec.target)
        if self._client_factory is None or (spec.target is None and not user):
            return None  # the Reconciler refuses a target it has no handle for
        return self._cached(spec.target, user)

    def _cached(self, target: EksTarget | None, user: str) -> Handles:
        assert self._client_factory is not None
        factory = self._client_factory

        def make() -> Handles:
            kube = factory(target, {"Impersonate-User": user} if user else {})
            kube.on_request = self.kube.on_request
            return Handles(kube, discovery.RestMapper(kube))

        return self._clients.get((target, user), make)

    def on_push(self, push: webhook.Push) -> int:
        """Mark the GitSyncs that follow the pushed repository and branch as requested.

        Through the ``requested-at`` annotation rather than an in-memory queue, so that a
        standby replica (the Service reaches both) hands the push to the leader, and a
        push during a restart is not lost.
        """
        items = self.kube.get(gitsync_path(self.opts.namespace)).get("items", [])
        stamp = f"{WEBHOOK_STAMP}{cond.now()}#{next(self._seq)}"
        n = 0
        for obj in items:
            git = ((obj.get("spec") or {}).get("source") or {}).get("git") or {}
            if webhook.repo_key(str(git.get("url", ""))) not in push.repos:
                continue
            branch = (git.get("ref") or {}).get("branch")
            if push.branch is not None and branch not in (None, push.branch):
                continue
            md = obj["metadata"]
            self.kube.request(
                "PATCH",
                gitsync_path(md["namespace"], md["name"]),
                body={"metadata": {"annotations": {REQUESTED_AT: stamp}}},
                content_type=MERGE_PATCH,
            )
            n += 1
        return n

    def _work(self, key: Key) -> None:
        delay: float | None = 30.0
        try:
            delay = self.work(key)
        except (KubeError, UnreachableError) as e:
            text = self.reconciler.scrub(self.states.get(key), str(e))
            log.error(f"GitSync {key[0]}/{key[1]}: {text}", extra={"gitsync": f"{key[0]}/{key[1]}"})
        except Exception as e:
            text = self.reconciler.scrub(self.states.get(key), f"{type(e).__name__}: {e}")
            log.error(f"GitSync {key[0]}/{key[1]}: unexpected error: {text}", extra={"gitsync": f"{key[0]}/{key[1]}"})
            log.debug("unexpected error", exc_info=True, extra={"gitsync": f"{key[0]}/{key[1]}"})
        finally:
            self._done(key, delay)

    # ------------------------------------------------------------------ process

    def _serve(self, name: str, addr: str, app: Callable[..., Any], limits: httpserve.Limits) -> None:
        self.servers.append(httpserve.serve(name=name, addr=addr, app=app, limits=limits))

    def health_app(self, environ: dict[str, Any], start: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok = True
        elif path == "/readyz":
            ok = self.synced.is_set() or (self.elector is not None and not self.elector.is_leader.is_set())
        else:
            start("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"ok\n" if ok else b"not ready\n"]

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
        metrics_app = make_wsgi_app(self.metrics.registry)
        if self.opts.metrics_addr:
            self._serve("metrics", self.opts.metrics_addr, metrics_app, METRICS_LIMITS)
        if self.opts.health_addr:
            self._serve("health", self.opts.health_addr, self.health_app, HEALTH_LIMITS)
        if self.opts.webhook_addr:
            receiver = webhook.Receiver(
                self.opts.webhook_secret,
                self.on_push,
                lambda provider, result: self.metrics.webhook_requests.labels(provider, result).inc(),
            )
            self._serve("webhook", self.opts.webhook_addr, receiver, WEBHOOK_LIMITS)
        if self.opts.leader_elect:
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
                    return
        threading.Thread(target=self._watch, name="watch-gitsyncs", daemon=True).start()
        if self.alerts:
            threading.Thread(target=self._refresh_alerts, name="alerts", daemon=True).start()
        if self.eks:
            threading.Thread(target=self._eks_loop, name="eks-drift", daemon=True).start()
        with ThreadPoolExecutor(max_workers=self.opts.workers, thread_name_prefix="gitsync") as pool:
            while not self.stop_event.is_set():
                if self.elector is not None and not self.elector.is_leader.is_set():
                    log.error("lost leadership: exiting so a restart rejoins as a standby")
                    self.stop_event.set()
                    break
                key = self._next_due()
                if key is not None:
                    pool.submit(self._work, key)
        if self.elector is not None:
            self.elector.stop()

    def _refresh_alerts(self) -> None:
        while not self.stop_event.wait(60.0):
            if self.alerts:
                self.alerts.refresh()

    def _eks_loop(self) -> None:
        assert self.eks is not None
        delay = 0.0
        while not self.stop_event.wait(delay):
            delay = self.eks.opts.interval
            if self.elector is None or self.elector.is_leader.is_set():
                try:
                    self.eks.check()
                except Exception:  # a bug must not end the loop: the next interval tries again
                    log.exception("EKS drift check: unexpected error", extra={"reason": "SyncFailed"})

    def stop(self) -> None:
        self.stop_event.set()
        with self._lock:
            self._lock.notify_all()


def pool_size(workers: int) -> int:
    """Connections for the controller's own handle: every worker plus watches and status writes."""
    return max(8, workers * 4)
