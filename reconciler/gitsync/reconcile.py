"""One reconcile of one GitSync: admit it, reach its cluster, run the pipeline, report the outcome.

Each step is one call: the tenancy and dependsOn checks, the target handle, then
:func:`~reconciler.gitsync.pipeline.sync_revision` with this GitSync's steps. Whichever fails
raises its StepError, caught once below and handed to :mod:`reconciler.gitsync.outcome`, the one
place that writes status, Events, metrics and the log line.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler import policy
from reconciler.aws.errors import AwsError
from reconciler.gitsync import helmstep, inputs, massprune
from reconciler.gitsync.cluster import HeldEvents, KubeCluster
from reconciler.gitsync.drift import Desired
from reconciler.gitsync.errors import (
    AccessDeniedError,
    ClusterFailedError,
    DependencyNotReadyError,
    PolicyViolationError,
    ShardLostError,
    StageFailedError,
    StepError,
    TargetFailedError,
    TargetRefusedError,
)
from reconciler.gitsync.outcome import Outcomes, Success
from reconciler.gitsync.pipeline import sync_revision
from reconciler.gitsync.results import ReconcileResult, Settled, Stage, SyncOptions, SyncResult
from reconciler.gitsync.spec import GitSyncSpec, SpecError, TargetNotAllowedError, gitsync_path
from reconciler.gitsync.steps import GitSyncSteps, SyncState
from reconciler.gitsync.tenancy import NotAllowedError, Tenancy
from reconciler.kube.client import FenceError, Kube, KubeError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.kube.events import EventRecorder
from reconciler.render.decryption import Decryptor
from reconciler.report import conditions as cond
from reconciler.report import redact
from reconciler.report.metrics import Metrics
from reconciler.source.local import tree_digest
from reconciler.source.shared import SharedSources
from reconciler.sync import health, inventory
from reconciler.sync.changeset import Action
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Plan

log = logging.getLogger("reconciler.gitsync")

__all__ = ["ReconcileResult", "Reconciler", "SyncState"]


def _gitsync_id(obj: dict[str, Any]) -> str:
    md = obj["metadata"]
    return f"{md.get('namespace')}/{md['name']}"


def _target_hint(spec: GitSyncSpec, e: BaseException | None) -> str:
    """A 401 from an EKS target is an IAM mapping problem, not a Kubernetes one: say where to look."""
    if spec.target is None or not isinstance(e, KubeError) or e.status != 401:
        return ""
    return (
        f" (EKS cluster {spec.target.cluster} does not accept the controller's AWS identity:"
        " it needs an access entry, or an aws-auth mapping, for that IAM role)"
    )


def _unsettled(obj: dict[str, Any], handled_request: str | None) -> bool:
    """Whether to mark Reconciling before the fetch: a new GitSync, a spec change, a failure, or a
    request (push, manual). A GitSync Ready at its generation is re-verified quietly, as Flux
    does: its fetch marks it only when the revision is new, so a no-op interval writes nothing."""
    st = obj.get("status") or {}
    settled = cond.is_ready(obj) and st.get("observedGeneration") == obj["metadata"].get("generation")
    requested = bool(handled_request) and handled_request != st.get("lastHandledRequestedAt")
    return not settled or requested


def _last_plan(p: Plan | None) -> dict[str, int]:
    counts = p.counts() if p else {}
    return {a.value: counts.get(a.value, 0) for a in Action}


def _baseline(res: SyncResult, inv: inventory.Inventory, mapper: RestMapper) -> dict[ObjectId, Desired]:
    """What each applied object must look like now: the drift watch compares against it."""
    tracked: dict[ObjectId, Desired] = {}
    live_after = (
        {o.item.oid: (o.live if o.live is not None else o.item.live) for o in res.applied.outcomes}
        if res.applied
        else {}
    )
    for item in res.plan.items if res.plan is not None else []:
        entry = inv.entries.get(item.oid)
        if item.desired is None or item.action is Action.SKIP or entry is None:
            continue
        try:
            resource = mapper.find(item.desired["apiVersion"], item.desired["kind"])
        except UnknownKindError:  # a kind gone since the apply is simply not watched
            continue
        verdict = res.health.get(item.oid) if res.health else None
        tracked[item.oid] = Desired.after_apply(
            item.desired,
            live_after.get(item.oid),
            fields=entry.fields,
            resource=resource,
            digest=entry.digest if entry.digest == item.digest else "",  # "": never vouched for
            healthy=verdict is not None and verdict.state is health.State.CURRENT,
        )
    return tracked


def _complete(res: SyncResult, tracked: dict[ObjectId, Desired]) -> bool:
    """Whether the drift watch follows every object of this sync: then, while it sees no change,
    it may vouch for all of them (a quiet interval skips the plan). Not with an object skipped
    (``reconcile: disabled`` is re-created when deleted), kept from pruning, or unexamined."""
    if res.plan is None or res.plan.unexamined:
        return False
    pruned = {i.oid for i in res.pruned.deleted} if res.pruned else set()
    return all(i.oid in tracked or i.oid in pruned for i in res.plan.items)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        mapper: RestMapper,
        *,
        metrics: Metrics,
        events: EventRecorder,
        cache_dir: Path,
        clients: Callable[[str, GitSyncSpec], tuple[Kube, RestMapper] | None] | None = None,
        policies_dir: Path | None = None,
        readers: Callable[[str, GitSyncSpec], Kube | None] | None = None,
        tenancy: Tenancy | None = None,
        charts: helmstep.Charts | None = None,
        shared: SharedSources | None = None,
        fence: Callable[[str, str], float] | None = None,
        decryptor: Decryptor | None = None,
        max_prune_ratio: float = 0.5,
    ) -> None:
        self.kube, self.mapper, self.metrics, self.events = kube, mapper, metrics, events
        self.cache_dir = cache_dir
        self.shared = shared or SharedSources(root=cache_dir)  # one fetch per (source, revision)
        self._fence = fence  # (namespace, name) -> monotonic end of our shard claim; None: no shards
        self.policies_dir = policies_dir
        self._policies: tuple[str, policy.PolicySet] | None = None
        self._clients = clients  # (namespace, spec) -> (Kube, RestMapper) to apply with; None: our own
        self._readers = readers  # (namespace, spec) -> Kube its local reads go through; None: our own
        self.tenancy = tenancy or Tenancy()
        self.charts = charts or helmstep.Charts.under(cache_dir)  # shared by every GitSync: one chart cache
        self.decryptor = decryptor or Decryptor()  # shared by every GitSync: one plaintext cache, in memory
        self.max_prune_ratio = max_prune_ratio  # the mass-prune guard's share (reconciler run --max-prune-ratio)
        metrics.count_decryptions(lambda: (self.decryptor.decryptions, self.decryptor.cache_hits))
        self.outcomes = Outcomes(patch_status=self._patch_status, events=events, metrics=metrics)
        self.held: HeldEvents | None = None  # the drift watch, once running: health read from its events

    def _reader(self, namespace: str, spec: GitSyncSpec) -> Kube:
        """The handle for what a GitSync reads in this cluster (its Secrets, ConfigMaps and local
        inventory): its own identity when it has one, so RBAC decides what a tenant may read."""
        made = self._readers(namespace, spec) if self._readers else None
        return made if made is not None else self.kube

    @staticmethod
    def scrub(state: SyncState | None, text: str) -> str:
        """``text`` without URL credentials or any value read from the GitSync's Secrets."""
        return redact.scrub(redact.scrub_urls(text), state.secrets if state else ())

    def _handles(self, namespace: str, spec: GitSyncSpec) -> tuple[Kube, RestMapper]:
        """The handle that plans, applies, prunes and keeps the inventory for ``spec``.

        Never the controller's own for a GitSync with a ``target``: when nothing can build a
        handle on that target, the GitSync fails (TargetFailed) rather than sync into the local
        cluster by accident. Raises :class:`AwsError` or :class:`SpecError`.
        """
        made = self._clients(namespace, spec) if self._clients else None
        if made is not None:
            return made
        if spec.target is not None:
            raise SpecError(
                f"spec.target: this controller was started without support for remote clusters ({spec.target})"
            )
        return self.kube, self.mapper

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica may write for the GitSync now (always, without shards)."""
        return self._fence is None or time.monotonic() < self._fence(namespace, name)

    def _fenced(self, kube: Kube, namespace: str, name: str) -> Kube:
        """``kube`` whose every request for this GitSync ends before its shard claim does."""
        return kube if self._fence is None else kube.fenced(functools.partial(self._fence, namespace, name))

    def _patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        md = obj["metadata"]
        if not self.owns(md["namespace"], md["name"]):  # fencing: its shard's new owner writes it
            log.info("shard lost: status not written", extra={"gitsync": _gitsync_id(obj), "reason": "ShardLost"})
            for key in status:
                (obj.get("status") or {}).pop(key, None)
            return
        try:
            self._fenced(self.kube, md["namespace"], md["name"]).request(
                "PATCH",
                gitsync_path(md["namespace"], md["name"], subresource="status"),
                body={"status": status},
                content_type="application/merge-patch+json",
            )
        except (KubeError, FenceError) as e:
            for key in status:  # not written: the next outcome must not take it for unchanged
                (obj.get("status") or {}).pop(key, None)
            if isinstance(e, FenceError):  # the claim lapsed while the status was on its way
                log.info("shard lost: status not written", extra={"gitsync": _gitsync_id(obj), "reason": "ShardLost"})
            elif not e.not_found:
                log.warning("cannot update status: %s", e, extra={"gitsync": _gitsync_id(obj)})

    def mark_reconciling(self, obj: dict[str, Any], message: str) -> None:
        self.outcomes.reconciling(obj, message)

    def policies(self) -> policy.PolicySet | None:
        """The policy set, reloaded whenever its files change (a ConfigMap volume updates in place)."""
        if self.policies_dir is None:
            return None
        digest = tree_digest(self.policies_dir) if self.policies_dir.is_dir() else str(self.policies_dir.stat())
        if self._policies is None or self._policies[0] != digest:
            self._policies = (digest, policy.load_policies(self.policies_dir))
            log.info(f"loaded policies from {self.policies_dir}")
        return self._policies[1]

    # ------------------------------------------------------------------ the reconcile

    def reconcile(
        self,
        obj: dict[str, Any],
        spec: GitSyncSpec,
        *,
        state: SyncState,
        ready_of: Callable[[str, str], bool],
        handled_request: str | None,
    ) -> ReconcileResult:
        """Admit, reach the target, sync the revision: each one call; any StepError ends it here."""
        md = obj["metadata"]
        self.metrics.interval.labels(md["namespace"], md["name"]).set(spec.interval)
        steps = self._steps(obj, spec, state=state, handled_request=handled_request)
        extra: dict[str, Any] = {}
        t0 = time.monotonic()
        try:
            self._admit(md["namespace"], spec, ready_of)
            if _unsettled(obj, handled_request):  # else marked by the fetch, only if the revision is new
                self.mark_reconciling(obj, f"reconciling {inputs.describe(spec)}")
            extra = {"lastHandledRequestedAt": handled_request} if handled_request else {}
            t0 = time.monotonic()
            kube, mapper = steps.target = self._target(md["namespace"], spec)
            options = self._options(obj, spec, policy_mode=steps.policy_mode)
            holds = functools.partial(self.owns, md["namespace"], md["name"])
            fenced = self._fenced(kube, md["namespace"], md["name"])
            watch = self.held if spec.target is None else None  # it watches the local cluster only
            cluster = KubeCluster(fenced, mapper, options, holds, watch=watch)
            res = sync_revision(steps=steps, cluster=cluster, options=options)
        except ShardLostError:
            log.info("shard lost: the reconcile stops", extra={"gitsync": steps.gid, "reason": "ShardLost"})
            return ReconcileResult(ok=False, waiting=True)  # the shard's new owner reports
        except StepError as e:
            return self._failed(steps, e, extra=extra, t0=t0)
        finally:
            steps.release()  # the render is done with the checkout's files
            self.outcomes.settle(obj)  # no Reconciling mark once it is over (a verdict follows, or none)
        return self._synced(steps, res, kube=kube, mapper=mapper, extra=extra, t0=t0)

    def _steps(
        self, obj: dict[str, Any], spec: GitSyncSpec, *, state: SyncState, handled_request: str | None
    ) -> GitSyncSteps:
        md = obj["metadata"]
        return GitSyncSteps(
            obj=obj,
            spec=spec,
            state=state,
            reader=lambda: self._reader(md["namespace"], spec),
            shared=self.shared,
            cache_dir=self.cache_dir,
            handled_request=handled_request,
            policy_mode=self.tenancy.policy_mode(spec.policy_mode),
            load_policies=self.policies,
            outcomes=self.outcomes,
            charts=self.charts,
            decryptor=self.decryptor,
            own_keys=self.tenancy.own_keys(md["namespace"]),
        )

    def _admit(self, namespace: str, spec: GitSyncSpec, ready_of: Callable[[str, str], bool]) -> None:
        """Before anything is read or fetched on the GitSync's behalf: may it, and may it now?"""
        try:
            self.tenancy.check(namespace, spec)
        except NotAllowedError as e:
            raise AccessDeniedError(str(e), stage=Stage.ADMIT) from e
        for dep in spec.depends_on:
            if not ready_of(dep.namespace, dep.name):
                why = f"waiting for dependency GitSync {dep.namespace}/{dep.name} to be Ready"
                raise DependencyNotReadyError(why, stage=Stage.ADMIT)

    def _target(self, namespace: str, spec: GitSyncSpec) -> tuple[Kube, RestMapper]:
        try:
            return self._handles(namespace, spec)
        except TargetNotAllowedError as e:  # only a spec or controller flag change cures it: no retry
            raise TargetRefusedError(str(e), stage=Stage.TARGET) from e
        except (AwsError, SpecError) as e:  # Status and Events still go to the GitSync here
            raise TargetFailedError(str(e), stage=Stage.TARGET) from e

    def _options(self, obj: dict[str, Any], spec: GitSyncSpec, *, policy_mode: str) -> SyncOptions:
        md = obj["metadata"]
        return SyncOptions(
            name=md["name"],
            namespace=md["namespace"],
            prune=spec.prune,
            wait=spec.wait,
            timeout=spec.timeout,
            default_namespace=helmstep.default_namespace(spec, md["namespace"]),
            policy_mode=policy_mode,
            owner_uid=str(md.get("uid") or ""),
            diff=False,  # nobody reads a diff here: human_diff and json_patch cost CPU per change
            guard=massprune.guard(obj, max_ratio=self.max_prune_ratio),
        )

    def fail(self, obj: dict[str, Any], error: StepError) -> ReconcileResult:
        """Report a failure found outside the reconcile (an invalid spec, an unexpected exception)."""
        message = f"GitSync {_gitsync_id(obj)}: {error.message}"
        return self.outcomes.failed(obj, error, message=message, revision="", extra={})

    def _failed(self, steps: GitSyncSteps, e: StepError, *, extra: dict[str, Any], t0: float) -> ReconcileResult:
        """The one place a failed step is turned into a message and handed to the outcome."""
        md = steps.obj["metadata"]
        if e.result is not None:  # the pipeline ran to a verdict: its duration counts
            self.metrics.reconcile_duration.labels(md["namespace"], md["name"]).observe(time.monotonic() - t0)
        if isinstance(e, StageFailedError):
            extra = {**extra, "lastPlan": _last_plan(e.result.plan)}
        at = f"revision {steps.revision}: " if steps.revision else ""
        tail = steps.raised if isinstance(e, PolicyViolationError) else ""
        if isinstance(e, ClusterFailedError):
            tail = _target_hint(steps.spec, e.__cause__)
        message = self.scrub(steps.state, f"GitSync {steps.gid}: {at}{e.message}{tail}")
        return self.outcomes.failed(steps.obj, e, message=message, revision=steps.revision, extra=extra)

    def _synced(
        self, steps: GitSyncSteps, res: SyncResult, *, kube: Kube, mapper: RestMapper, extra: dict[str, Any], t0: float
    ) -> ReconcileResult:
        obj, md, revision = steps.obj, steps.obj["metadata"], res.revision
        if res.settled is Settled.UNCHANGED:
            return self.outcomes.unchanged(obj, revision=revision, extra=extra)
        if res.settled is Settled.HELD:
            return self.outcomes.held(obj, revision=revision, drifted=steps.state.drifted)
        self.metrics.reconcile_duration.labels(md["namespace"], md["name"]).observe(time.monotonic() - t0)
        last_plan = _last_plan(res.plan)
        inv = res.inventory if res.inventory is not None else inventory.load(kube, md["namespace"], md["name"])
        summary = ", ".join(f"{n} {a}" for a, n in last_plan.items() if n)
        chart = f" (chart {res.chart})" if res.chart else ""
        approved = massprune.approved_note(revision) if res.approved_mass_prune else ""
        done = Success(
            revision=revision,
            message=f"Applied revision {revision}{chart}: {summary}{steps.raised}{approved}",
            inventory=inv.to_status(),
            managed=len(inv),
            changed=bool(res.plan and res.plan.has_changes)
            or (obj.get("status") or {}).get("lastAppliedRevision") != revision,
            pruned=[i.oid for i in res.pruned.deleted] if res.pruned else [],
            healthy=steps.spec.wait,
        )
        if res.chart:
            extra = {**extra, "lastAppliedChart": res.chart}
        out = self.outcomes.succeeded(obj, done, extra={**extra, "lastPlan": last_plan})
        if not out.unwritten:  # else the retry plans in full, so its verdict says what this one did
            steps.state.inputs, steps.state.synced_at = steps.inputs, time.monotonic()
        out.tracked = _baseline(res, inv, mapper)
        out.complete = _complete(res, out.tracked)
        return out
