"""One reconcile of one GitSync: fetch, render, sync, and tell everyone what happened.

Each outcome is reported four ways at once — status conditions, an Event, metrics and
one log line — from the same facts, so ``kubectl get gitsync``, ``kubectl events``,
Grafana and ``kubectl logs | grep ERROR`` never disagree about why a sync failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import policy
from reconciler.aws.errors import AwsError
from reconciler.gitsync.drift import Desired
from reconciler.gitsync.spec import (
    WEBHOOK_STAMP,
    BucketSource,
    EksTarget,
    GitSource,
    GitSyncSpec,
    SpecError,
    TargetNotAllowedError,
    gitsync_path,
)
from reconciler.gitsync.tenancy import NotAllowedError, Tenancy
from reconciler.kube import paths
from reconciler.kube.client import Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.kube.events import EventRecorder
from reconciler.render import build as render_build
from reconciler.render.manifests import ManifestError
from reconciler.report import conditions as cond
from reconciler.report import redact
from reconciler.report.metrics import Metrics
from reconciler.source import bucket as bucket_source
from reconciler.source import git as git_source
from reconciler.source.artifact import Source, SourceError
from reconciler.source.limits import TreeLimitError
from reconciler.source.local import tree_digest
from reconciler.sync import engine, inventory
from reconciler.sync import prune as pruning
from reconciler.sync.changeset import Action
from reconciler.sync.inventory import InventoryError, InventoryOwnerError
from reconciler.sync.objects import ObjectId

log = logging.getLogger("reconciler.gitsync")


@dataclass
class Outcome:
    """What the controller needs to schedule the next run."""

    ok: bool
    stalled: bool = False  # retrying cannot help until the spec changes
    waiting: bool = False  # on a dependency
    revision: str = ""
    tracked: dict[ObjectId, Desired] | None = None  # what the objects must look like now (drift baseline)


@dataclass
class SyncState:
    """Per-GitSync state that outlives one reconcile (the git cache handle, failures)."""

    source: Source | None = None
    source_key: str = ""  # repr of the spec's source: a changed field opens a new source
    failures: int = 0
    drifted: int = 0  # objects drifted at last report (for DriftCorrected)
    inputs: str = ""  # digest of everything the last successful sync rendered from
    synced_at: float = float("-inf")  # monotonic time of the last full successful sync
    secrets: frozenset[str] = frozenset()  # values read from its Secrets: scrubbed from every message
    extra: dict[str, Any] = field(default_factory=dict)


def _describe(spec: GitSyncSpec) -> str:
    """The source as a status message names it, without credentials."""
    src = spec.source
    if isinstance(src, BucketSource):
        return f"s3://{src.bucket}/{src.prefix}"
    return f"{redact.redact_url(src.url)} ({src.ref})"


def _printable_secrets(values: Any) -> frozenset[str]:
    """The values of a Secret as they could appear in a message (text only, long enough to mask)."""
    out = set()
    for v in values:
        try:
            text = v.decode().strip()
        except UnicodeDecodeError:
            continue
        if len(text) >= redact.MIN_LEN:
            out.add(text)
    return frozenset(out)


def _gitsync_id(obj: dict[str, Any]) -> str:
    md = obj["metadata"]
    return f"{md.get('namespace')}/{md['name']}"


def _target_hint(spec: GitSyncSpec, e: Exception) -> str:
    """A 401 from an EKS target is an IAM mapping problem, not a Kubernetes one: say where to look."""
    if spec.target is None or not isinstance(e, KubeError) or e.status != 401:
        return ""
    return (
        f" (EKS cluster {spec.target.cluster} does not accept the controller's AWS identity:"
        " it needs an access entry, or an aws-auth mapping, for that IAM role)"
    )


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        mapper: RestMapper,
        metrics: Metrics,
        events: EventRecorder,
        cache_dir: Path,
        clients: Callable[[str, GitSyncSpec], tuple[Kube, RestMapper] | None] | None = None,
        policies_dir: Path | None = None,
        readers: Callable[[str, GitSyncSpec], Kube | None] | None = None,
        tenancy: Tenancy | None = None,
    ) -> None:
        self.kube, self.mapper, self.metrics, self.events = kube, mapper, metrics, events
        self.cache_dir = cache_dir
        self.policies_dir = policies_dir
        self._policies: tuple[str, policy.PolicySet] | None = None
        self._clients = clients  # (namespace, spec) -> (Kube, RestMapper) to apply with; None: our own
        self._readers = readers  # (namespace, spec) -> Kube its local reads go through; None: our own
        self.tenancy = tenancy or Tenancy()

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

    # ------------------------------------------------------------------ inputs

    @staticmethod
    def _secret_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
        sec = kube.get(paths.api_path(group="", version="v1", resource="secrets", namespace=namespace, name=name))
        return {k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()}

    @staticmethod
    def _git_credentials(d: dict[str, bytes]) -> git_source.GitCredentials:
        """Flux's secret keys: identity, known_hosts, username, password, bearerToken, ca.crt."""

        def text(key: str) -> str | None:
            return d[key].decode() if key in d else None

        return git_source.GitCredentials(
            ssh_private_key=d.get("identity"),
            known_hosts=d.get("known_hosts"),
            username=text("username"),
            password=text("password"),
            bearer_token=text("bearerToken"),
            ca_bundle=d.get("ca.crt") or d.get("caFile"),
        )

    def _variables(self, kube: Kube, namespace: str, spec: GitSyncSpec) -> tuple[dict[str, str], frozenset[str]]:
        values: dict[str, str] = {}
        secret_names: set[str] = set()
        for vf in spec.substitute_from:
            kind = "secrets" if vf.kind == "Secret" else "configmaps"
            obj = kube.get_or_none(
                paths.api_path(group="", version="v1", resource=kind, namespace=namespace, name=vf.name)
            )
            if obj is None:
                if vf.optional:
                    continue
                raise SpecError(f"spec.substituteFrom: {vf.kind} {namespace}/{vf.name} not found")
            data = obj.get("data") or {}
            if vf.kind == "Secret":
                decoded = {}
                for k, v in data.items():
                    try:
                        decoded[k] = base64.b64decode(v).decode()
                    except (binascii.Error, UnicodeDecodeError) as e:
                        raise SpecError(
                            f"spec.substituteFrom: Secret {namespace}/{vf.name} key {k} is not UTF-8 text"
                        ) from e
                data = decoded
                secret_names |= set(data)
            values.update(data)
        values.update(spec.substitute)  # inline values win, as in Flux
        return values, frozenset(secret_names - set(spec.substitute))

    def _source(self, state: SyncState, namespace: str, name: str, spec: GitSyncSpec) -> Source:
        """The source object kept between reconciles, opened again when its spec or the content
        of its Secret changes (rotated keys take effect at the next reconcile)."""
        src = spec.source
        secret = (
            self._secret_data(self._reader(namespace, spec), namespace, src.secret_ref.name) if src.secret_ref else None
        )
        if secret is not None:
            state.secrets |= _printable_secrets(secret.values())
        key = repr(src)
        if secret is not None:
            key += hashlib.sha256(repr(sorted(secret.items())).encode()).hexdigest()
        if state.source is None or state.source_key != key:
            if state.source is not None:
                state.source.close()
            cache_dir = self.cache_dir / namespace / name
            state.source = self._open_source(src, secret, timeout=min(spec.timeout, 300.0), cache_dir=cache_dir)
            state.source_key = key
        return state.source

    def _open_source(
        self, src: GitSource | BucketSource, secret: dict[str, bytes] | None, *, timeout: float, cache_dir: Path
    ) -> Source:
        if isinstance(src, BucketSource):
            return bucket_source.BucketSource(
                src.bucket,
                prefix=src.prefix,
                region=src.region,
                endpoint=src.endpoint,
                cache_dir=cache_dir,
                credentials=bucket_source.BucketCredentials.from_secret(secret, name=src.secret_ref.name)
                if secret is not None and src.secret_ref
                else None,
                timeout=timeout,
            )
        return git_source.GitSource(
            src.url,
            src.ref,
            cache_dir=cache_dir,
            credentials=self._git_credentials(secret) if secret is not None else None,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ status

    def _patch_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        md = obj["metadata"]
        try:
            self.kube.request(
                "PATCH",
                gitsync_path(md["namespace"], md["name"], subresource="status"),
                body={"status": status},
                content_type="application/merge-patch+json",
            )
        except KubeError as e:
            if not e.not_found:
                log.warning("cannot update status: %s", e, extra={"gitsync": _gitsync_id(obj)})

    def _conditions(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return list((obj.get("status") or {}).get("conditions") or [])

    def mark_reconciling(self, obj: dict[str, Any], message: str) -> None:
        gen = int(obj["metadata"].get("generation") or 0)
        cs = cond.set_condition(self._conditions(obj), cond.RECONCILING, True, "Progressing", message, gen)
        if cond.get(cs, cond.READY) is None:
            cs = cond.set_condition(cs, cond.READY, False, "Progressing", message, gen)
        obj.setdefault("status", {})["conditions"] = cs
        self._patch_status(obj, {"conditions": cs})

    def _fail(
        self,
        obj: dict[str, Any],
        reason: str,
        event_reason: str,
        message: str,
        revision: str = "",
        *,
        stalled: bool = False,
        waiting: bool = False,
        extra_status: dict[str, Any] | None = None,
    ) -> Outcome:
        md = obj["metadata"]
        ns, name, gen = md["namespace"], md["name"], int(md.get("generation") or 0)
        cs = self._conditions(obj)
        cs = cond.set_condition(cs, cond.READY, False, reason, message, gen)
        cs = cond.remove_condition(cs, cond.RECONCILING)
        cs = (
            cond.set_condition(cs, cond.STALLED, True, reason, message, gen)
            if stalled
            else cond.remove_condition(cs, cond.STALLED)
        )
        status: dict[str, Any] = {"conditions": cs, "observedGeneration": gen, **(extra_status or {})}
        if revision:
            status["lastAttemptedRevision"] = revision
        obj.setdefault("status", {}).update(status)
        self._patch_status(obj, status)
        if not waiting:
            self.events.emit(obj, "Warning", event_reason, message)
            self.metrics.reconciles.labels(ns, name, "failure").inc()
            log.error(message, extra={"gitsync": f"{ns}/{name}", "revision": revision, "reason": reason})
        else:
            log.info(message, extra={"gitsync": f"{ns}/{name}", "reason": reason})
        self.metrics.ready.labels(ns, name).set(0)
        self.metrics.stalled.labels(ns, name).set(1 if stalled else 0)
        return Outcome(ok=False, stalled=stalled, waiting=waiting, revision=revision)

    # ------------------------------------------------------------------ the reconcile

    def reconcile(
        self, obj: dict[str, Any], spec: GitSyncSpec, state: SyncState, ready_of: Any, handled_request: str | None
    ) -> Outcome:
        md = obj["metadata"]
        ns, name = md["namespace"], md["name"]
        gid = f"{ns}/{name}"
        self.metrics.interval.labels(ns, name).set(spec.interval)
        try:  # before anything is read or fetched on the GitSync's behalf
            self.tenancy.check(ns, spec)
        except NotAllowedError as e:
            return self._fail(obj, "AccessDenied", "SyncFailed", f"GitSync {gid}: {e}", stalled=True)
        for dep in spec.depends_on:
            if not ready_of(dep.namespace, dep.name):
                return self._fail(
                    obj,
                    "DependencyNotReady",
                    "DependencyNotReady",
                    f"GitSync {gid}: waiting for dependency GitSync {dep.namespace}/{dep.name} to be Ready",
                    waiting=True,
                )
        self.mark_reconciling(obj, f"reconciling {_describe(spec)}")
        extra: dict[str, Any] = {"lastHandledRequestedAt": handled_request} if handled_request else {}
        t0 = time.monotonic()
        try:
            kube, mapper = self._handles(ns, spec)
        except TargetNotAllowedError as e:  # only a spec or controller flag change cures it: no retry
            msg = f"GitSync {gid}: {e}"
            return self._fail(obj, "TargetNotAllowed", "SyncFailed", msg, stalled=True, extra_status=extra)
        except (AwsError, SpecError) as e:  # Status and Events still go to the GitSync here
            msg = f"GitSync {gid}: cannot connect to the target cluster: {e}"
            return self._fail(obj, "TargetFailed", "SyncFailed", msg, extra_status=extra)

        # 1. fetch
        try:
            source = self._source(state, ns, name, spec)
            f0 = time.monotonic()
            artifact = source.fetch()
            self.metrics.fetch_duration.labels(ns, name).observe(time.monotonic() - f0)
        except (SourceError, KubeError, UnreachableError, ValueError) as e:
            msg = self.scrub(state, f"GitSync {gid}: fetch failed: {e}")
            return self._fail(obj, "ArtifactFailed", "SourceFailed", msg, extra_status=extra)
        revision = artifact.revision

        # 2. render
        secrets: frozenset[str] = frozenset()
        try:
            values, secret_vars = self._variables(self._reader(ns, spec), ns, spec)
            inputs = self._inputs(render_build.confine(artifact.path, spec.path), values, md)
            if self._unchanged_inputs(obj, spec, state, inputs, handled_request):
                return self._same_content(obj, state, revision, extra)
            state.inputs = ""  # until this sync succeeds: a failure may have changed live state
            secrets = frozenset(values[k] for k in secret_vars if len(values[k]) >= redact.MIN_LEN) | state.secrets
            state.secrets = secrets
            manifests = render_build.render(
                artifact.path,
                spec.path,
                render_build.RenderOptions(
                    substitute=values if spec.substitution else None,  # opt-in, as Flux's postBuild
                    secret_vars=secret_vars,
                    patches=spec.patches,
                    target_namespace=spec.target_namespace,
                ),
            )
        except (ManifestError, SpecError, KubeError, UnreachableError, TreeLimitError) as e:
            msg = self.scrub(state, f"GitSync {gid}: revision {revision}: render failed: {e}")
            return self._fail(obj, "BuildFailed", "RenderFailed", msg, revision, extra_status=extra)
        secrets |= redact.secret_values(manifests)
        state.secrets = secrets
        policy_mode = self.tenancy.policy_mode(spec.policy_mode)
        raised = ""
        if policy_mode != spec.policy_mode:
            raised = f" (spec.policy.mode {spec.policy_mode} raised to {policy_mode} by --min-policy-mode)"
            log.info(f"GitSync {gid}: policy mode{raised}", extra={"gitsync": gid, "reason": "PolicyModeRaised"})

        try:
            policies = self.policies() if policy_mode != "off" else None
        except (policy.PolicyError, OSError) as e:
            msg = f"GitSync {gid}: revision {revision}: policies cannot be loaded, the sync refuses to proceed: {e}"
            return self._fail(obj, "PolicyFailed", "SyncFailed", msg, revision, extra_status=extra)

        # 3. plan, apply, prune, wait
        st = obj.get("status") or {}
        if (
            spec.drift_mode == "warn"
            and state.drifted
            and revision == st.get("lastAppliedRevision")
            and md.get("generation") == st.get("observedGeneration")
            and (not handled_request or handled_request == st.get("lastHandledRequestedAt"))
        ):
            # drift.mode warn: report drift, never correct it; only a new revision or spec applies.
            log.info(
                f"GitSync {gid}: {state.drifted} drifted object(s) left as they are (drift.mode: warn)",
                extra={"gitsync": gid, "revision": revision, "reason": "DriftDetected"},
            )
            cs = cond.remove_condition(self._conditions(obj), cond.RECONCILING)
            self._patch_status(obj, {"conditions": cs})
            return Outcome(ok=True, revision=revision)
        opts = engine.Options(
            name=name,
            namespace=ns,
            prune=spec.prune,
            wait=spec.wait,
            timeout=spec.timeout,
            default_namespace=spec.target_namespace or ns,
            policies=policies,
            policy_mode=policy_mode,
            owner_uid=str(md.get("uid") or ""),
        )
        try:
            res = engine.run(kube, mapper, manifests, revision, opts)
        except InventoryOwnerError as e:  # retried: deleting the ConfigMap is how it is resolved
            msg = f"GitSync {gid}: revision {revision}: {e}"
            return self._fail(obj, "InventoryConflict", "SyncFailed", msg, revision, extra_status=extra)
        except (InventoryError, KubeError, UnreachableError) as e:
            msg = redact.scrub(f"GitSync {gid}: revision {revision}: {e}{_target_hint(spec, e)}", secrets)
            return self._fail(obj, "ReconciliationFailed", "SyncFailed", msg, revision, extra_status=extra)
        duration = time.monotonic() - t0
        self.metrics.reconcile_duration.labels(ns, name).observe(duration)
        self._report_violations(obj, res.violations, secrets)
        if res.stage == "policy" and res.errors:
            first = redact.scrub(res.errors[0], secrets)
            more = f" (and {len(res.errors) - 1} more)" if len(res.errors) > 1 else ""
            denied = "denied by policy, nothing applied or pruned"
            msg = f"GitSync {gid}: revision {revision}: {denied}: {first}{more}{raised}"
            return self._fail(obj, "PolicyViolation", "PolicyViolation", msg, revision, extra_status=extra)
        plan_counts = res.plan.counts() if res.plan else {}
        last_plan = {a.value: plan_counts.get(a.value, 0) for a in Action}
        extra = {**extra, "lastPlan": last_plan}
        if res.errors:
            what = {
                "plan": "plan",
                "preflight": "validation",
                "guard": "prune guard",
                "apply": "apply",
                "prune": "prune",
                "health": "health check",
            }.get(res.stage, res.stage)
            first = redact.scrub(res.errors[0], secrets)
            more = f" (and {len(res.errors) - 1} more)" if len(res.errors) > 1 else ""
            msg = f"GitSync {gid}: revision {revision}: {what} failed: {first}{more}"
            event = "HealthCheckFailed" if res.stage == "health" else "SyncFailed"
            reason = "HealthCheckFailed" if res.stage == "health" else "ReconciliationFailed"
            return self._fail(obj, reason, event, msg, revision, extra_status=extra)

        # 4. success
        gen = int(md.get("generation") or 0)
        inv = res.inventory if res.inventory is not None else inventory.load(kube, ns, name)
        cs = self._conditions(obj)
        summary = ", ".join(f"{n} {a}" for a, n in last_plan.items() if n)
        msg = f"Applied revision {revision}: {summary}{raised}"
        cs = cond.set_condition(cs, cond.READY, True, "ReconciliationSucceeded", msg, gen)
        cs = cond.remove_condition(cs, cond.RECONCILING)
        cs = cond.remove_condition(cs, cond.STALLED)
        if spec.wait:
            cs = cond.set_condition(cs, cond.HEALTHY, True, "Succeeded", "all applied objects are healthy", gen)
        status = {
            "conditions": cs,
            "observedGeneration": gen,
            "lastAttemptedRevision": revision,
            "lastAppliedRevision": revision,
            "inventory": inv.to_status(),
            **extra,
        }
        changed = (
            bool(res.plan and res.plan.has_changes) or (obj.get("status") or {}).get("lastAppliedRevision") != revision
        )
        obj.setdefault("status", {}).update(status)
        self._patch_status(obj, status)
        if changed:
            self.events.emit(obj, "Normal", "Synced", msg)
            if res.pruned and res.pruned.deleted:
                pruned = ", ".join(str(i.oid) for i in res.pruned.deleted[:20])
                self.events.emit(obj, "Normal", "Pruned", f"revision {revision}: pruned {pruned}")
        log.info(msg, extra={"gitsync": gid, "revision": revision, "reason": "ReconciliationSucceeded"})
        self.metrics.reconciles.labels(ns, name, "success").inc()
        self.metrics.ready.labels(ns, name).set(1)
        self.metrics.stalled.labels(ns, name).set(0)
        self.metrics.last_success.labels(ns, name).set(time.time())
        self.metrics.managed.labels(ns, name).set(len(inv))
        self.metrics.set_revision(ns, name, revision)
        state.inputs, state.synced_at = inputs, time.monotonic()
        tracked: dict[ObjectId, Desired] = {}
        live_after = (
            {o.item.oid: (o.live if o.live is not None else o.item.live) for o in res.applied.outcomes}
            if res.applied
            else {}
        )
        if res.plan is not None:
            for item in res.plan.items:
                entry = inv.entries.get(item.oid)
                if item.desired is None or item.action is Action.SKIP or entry is None:
                    continue
                try:
                    resource = mapper.find(item.desired["apiVersion"], item.desired["kind"])
                except UnknownKindError:  # a kind gone since the apply is simply not watched
                    continue
                tracked[item.oid] = Desired.after_apply(item.desired, live_after.get(item.oid), entry.fields, resource)
        return Outcome(ok=True, revision=revision, tracked=tracked)

    def policies(self) -> policy.PolicySet | None:
        """The policy set, reloaded whenever its files change (a ConfigMap volume updates in place)."""
        if self.policies_dir is None:
            return None
        digest = tree_digest(self.policies_dir) if self.policies_dir.is_dir() else str(self.policies_dir.stat())
        if self._policies is None or self._policies[0] != digest:
            self._policies = (digest, policy.load_policies(self.policies_dir))
            log.info(f"loaded policies from {self.policies_dir}")
        return self._policies[1]

    def _report_violations(
        self, obj: dict[str, Any], violations: list[policy.Violation], secrets: frozenset[str]
    ) -> None:
        md = obj["metadata"]
        ns, name = md["namespace"], md["name"]
        self.metrics.drop_series(self.metrics.policy_violations, ns, name)
        for (pol, _action), n in policy.counts(violations).items():
            self.metrics.policy_violations.labels(ns, name, pol).inc(n)
        if violations:
            lines = [redact.scrub(policy.describe(v), secrets) for v in violations[:10]]
            more = f" (and {len(violations) - 10} more)" if len(violations) > 10 else ""
            self.events.emit(obj, "Warning", "PolicyViolation", "; ".join(lines) + more, action="CheckPolicy")

    @staticmethod
    def _inputs(path: Path, values: dict[str, str], md: dict[str, Any]) -> str:
        """Digest of all a sync renders from: the files under its path, its variables, its spec.

        ``path`` is already confined to the revision; the digest streams and stops at the source caps."""
        files = tree_digest(path)
        blob = json.dumps([files, sorted(values.items()), md.get("generation")], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    @staticmethod
    def _unchanged_inputs(
        obj: dict[str, Any], spec: GitSyncSpec, state: SyncState, inputs: str, handled_request: str | None
    ) -> bool:
        """A push to a repository shared by many GitSyncs wakes them all; those whose path did not
        change need not render and plan again. Only for that trigger: a reconcile asked for by a
        person, by drift, by a spec change or by the interval (the safety net) always runs in full."""
        st = obj.get("status") or {}
        webhook = (
            bool(handled_request)
            and handled_request != st.get("lastHandledRequestedAt")
            and str(handled_request).startswith(WEBHOOK_STAMP)
        )
        return (
            webhook
            and state.inputs == inputs
            and state.drifted == 0
            and time.monotonic() - state.synced_at < spec.interval
        )

    def _same_content(self, obj: dict[str, Any], state: SyncState, revision: str, extra: dict[str, Any]) -> Outcome:
        md = obj["metadata"]
        ns, name, gen = md["namespace"], md["name"], int(md.get("generation") or 0)
        msg = f"Applied revision {revision}: nothing changed under this GitSync's path"
        cs = cond.set_condition(self._conditions(obj), cond.READY, True, "ReconciliationSucceeded", msg, gen)
        cs = cond.remove_condition(cs, cond.RECONCILING)
        status = {
            "conditions": cs,
            "observedGeneration": gen,
            "lastAttemptedRevision": revision,
            "lastAppliedRevision": revision,
            **extra,
        }
        obj.setdefault("status", {}).update(status)
        self._patch_status(obj, status)
        log.info(msg, extra={"gitsync": f"{ns}/{name}", "revision": revision, "reason": "ReconciliationSucceeded"})
        self.metrics.reconciles.labels(ns, name, "success").inc()
        self.metrics.last_success.labels(ns, name).set(time.time())
        self.metrics.set_revision(ns, name, revision)
        return Outcome(ok=True, revision=revision)

    def finalize(self, obj: dict[str, Any], spec: GitSyncSpec | None) -> str | None:
        """On deletion: prune everything the GitSync owns if ``prune: true``, else orphan it.

        A suspended GitSync orphans (as in Flux: suspend, then delete, hands the objects over),
        and the prune runs as the GitSync's ServiceAccount when it has one, so deletion is held
        to the same RBAC as apply. Either way the inventory goes too, from where it lives: the
        target when there is one. Returns an error message, or None when the finalizer may go.

        An orphaning GitSync never waits for its target: if the target cannot be reached its
        inventory stays there, and the owner stamp on it keeps a later GitSync of the same name
        from pruning the orphans (it stops with InventoryConflict instead).
        """
        md = obj["metadata"]
        ns, name = md["namespace"], md["name"]
        gid = f"{ns}/{name}"
        uid = str(md.get("uid") or "")
        orphan = spec is None or not spec.prune or spec.suspend
        remote = spec.target if spec is not None else None
        # An invalid spec still has a namespace: its local reads and writes go through the
        # identity the tenancy flags give any GitSync there, never the controller's own.
        bare = spec if spec is not None else GitSyncSpec(git=None)
        local = self._reader(ns, bare)
        try:
            kube, mapper = self._handles(ns, spec) if spec is not None else (local, self.mapper)
        except (AwsError, SpecError) as e:
            applied = bool((obj.get("status") or {}).get("lastAppliedRevision"))
            if not orphan and applied:
                return f"GitSync {gid}: cannot prune on deletion: cannot connect to the target cluster: {e}"
            # Orphaning, or never applied anything there (e.g. a target the allow-list refused):
            # there is nothing to wait for, and holding the finalizer would only block deletion.
            self._inventory_left(obj, remote, f"cannot connect to the target cluster: {e}")
            return None
        if orphan:
            why = "spec invalid" if spec is None else ("suspended" if spec.prune else "prune: false")
            log.info(f"GitSync deleted; objects orphaned ({why})", extra={"gitsync": gid})
        else:
            opts = engine.Options(
                name=name, namespace=ns, prune=True, guard=pruning.Guard(allow_mass_prune=True), owner_uid=uid
            )
            try:
                res = engine.run(kube, mapper, [], "", opts)
            except InventoryOwnerError as e:  # it owns nothing there: nothing to wait for
                log.warning(f"GitSync {gid}: deleted, nothing pruned: {e}", extra={"gitsync": gid})
                self.metrics.forget(ns, name)
                return None
            except (InventoryError, KubeError, UnreachableError) as e:
                return f"GitSync {gid}: cannot prune on deletion: {e}"
            if res.errors:
                return f"GitSync {gid}: cannot prune on deletion: {res.errors[0]}"
            n = len(res.pruned.deleted) if res.pruned else 0
            log.info(f"GitSync deleted; pruned {n} objects", extra={"gitsync": gid})
        # The inventory lives next to the objects: on the remote target when there is one.
        try:
            inventory.delete(kube if remote is not None else local, namespace=ns, sync_name=name, owner_uid=uid)
        except InventoryOwnerError as e:
            log.warning(f"GitSync {gid}: deleted; {e}: left as it is", extra={"gitsync": gid})
        except (KubeError, UnreachableError) as e:
            if orphan and remote is not None:
                self._inventory_left(obj, remote, str(e))
                return None
            return f"GitSync {gid}: cannot delete the inventory: {e}"
        self.metrics.forget(ns, name)
        return None

    def _inventory_left(self, obj: dict[str, Any], target: EksTarget | None, reason: str) -> None:
        """An orphaning GitSync whose remote inventory cannot be deleted: one ERROR line, and the
        finalizer goes anyway (a target gone for good must not hold a deletion forever)."""
        md = obj["metadata"]
        gid = f"{md['namespace']}/{md['name']}"
        log.error(
            f"GitSync {gid}: deleted, objects orphaned, but its inventory ConfigMap "
            f"{md['namespace']}/{inventory.configmap_name(md['name'])} stays in {target}: {reason}",
            extra={"gitsync": gid, "reason": "TargetFailed"},
        )
        self.metrics.forget(md["namespace"], md["name"])
