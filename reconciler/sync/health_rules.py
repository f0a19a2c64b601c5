"""Readiness rules of the built-in kinds: one table of per-kind rules.

Workload controllers predate the generic ``Ready``/``Stalled``/``Reconciling`` conditions,
so each built-in kind is judged by its own status fields, as kstatus does. Each rule takes
the live object and its conditions (by type) and returns one :class:`Health`; :data:`RULES`
maps (group, kind) to its rule. The generic part is in ``health``.
"""

from __future__ import annotations

from typing import Any

from reconciler.sync.kstatus import Conditions, Health, Rule, State, count, explain, get, has, integer, reason_of, text

# Waiting reasons that do not resolve on their own: the pod needs a new image, a fixed
# command or a fixed image name.  ErrImagePull and CreateContainerConfigError are left out on
# purpose: they are routinely transient right after an apply (registry hiccup, a Secret
# created a moment later in the same batch) and turn into the back-off reasons when they are not.
_FAILING_WAITING_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


def _not_observed(obj: dict[str, Any], kind: str) -> Health | None:
    """Workload controllers always write observedGeneration; until they do, nothing is known.

    kstatus insists on this for DaemonSets only; for the other workloads a status-less object
    with ``replicas: 0`` would otherwise look finished before any controller saw it.
    """
    if integer(obj, "status", "observedGeneration") is None:
        return Health(State.IN_PROGRESS, f"{kind} status not yet reported by its controller")
    return None


def _deployment(obj: dict[str, Any], conds: Conditions) -> Health:
    progressing = conds.get("Progressing")
    deadline = progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded"
    if deadline and has(conds, "Progressing", "False"):
        return Health(State.FAILED, f"Deployment rollout failed{explain(progressing)}")
    if (early := _not_observed(obj, "Deployment")) is not None:
        return early
    if get(obj, "spec", "paused") is True:
        # A paused rollout is the user's explicit choice: it will not progress, so waiting
        # for it could only time out.  (Argo CD calls this Suspended; kstatus has no such state.)
        return Health(State.CURRENT, "Deployment is paused; its rollout is not awaited")

    spec = count(obj, "spec", "replicas", default=1)
    replicas = count(obj, "status", "replicas")
    updated = count(obj, "status", "updatedReplicas")
    ready = count(obj, "status", "readyReplicas")
    available = count(obj, "status", "availableReplicas")
    failure = conds.get("ReplicaFailure")
    why = f" ({reason_of(failure)})" if failure is not None and failure.get("status") == "True" else ""

    if replicas < spec:
        return Health(State.IN_PROGRESS, f"Deployment rollout: {replicas} of {spec} replicas created{why}")
    if updated < spec:
        return Health(State.IN_PROGRESS, f"Deployment rollout: {updated} of {spec} replicas updated{why}")
    if replicas > spec:
        return Health(State.IN_PROGRESS, f"Deployment rollout: {replicas - spec} old replicas pending termination")
    if available < updated:
        return Health(State.IN_PROGRESS, f"Deployment rollout: {available} of {updated} updated replicas available")
    if ready < spec:
        return Health(State.IN_PROGRESS, f"Deployment rollout: {ready} of {spec} replicas ready")

    # Without progressDeadlineSeconds the controller never sets Progressing; the counts are all we have.
    if get(obj, "spec", "progressDeadlineSeconds") is not None and not (
        has(conds, "Progressing", "True") and (progressing or {}).get("reason") == "NewReplicaSetAvailable"
    ):
        detail = explain(progressing) if progressing is not None else ": no Progressing condition yet"
        return Health(State.IN_PROGRESS, f"Deployment rollout: new ReplicaSet not yet available{detail}")
    if not has(conds, "Available", "True"):
        detail = explain(conds["Available"]) if "Available" in conds else ": no Available condition yet"
        return Health(State.IN_PROGRESS, f"Deployment not available{detail}")
    return Health(State.CURRENT, f"Deployment available: {available} of {spec} replicas")


def _statefulset(obj: dict[str, Any], conds: Conditions) -> Health:
    if (early := _not_observed(obj, "StatefulSet")) is not None:
        return early
    spec = count(obj, "spec", "replicas", default=1)
    replicas = count(obj, "status", "replicas")
    ready = count(obj, "status", "readyReplicas")
    current = count(obj, "status", "currentReplicas")
    updated = count(obj, "status", "updatedReplicas")
    available = integer(obj, "status", "availableReplicas")

    if replicas < spec:
        return Health(State.IN_PROGRESS, f"StatefulSet rollout: {replicas} of {spec} replicas created")
    if ready < spec:
        return Health(State.IN_PROGRESS, f"StatefulSet rollout: {ready} of {spec} replicas ready")
    if available is not None and available < spec:  # differs from ready only with minReadySeconds
        return Health(State.IN_PROGRESS, f"StatefulSet rollout: {available} of {spec} replicas available")
    if replicas > spec:
        return Health(State.IN_PROGRESS, f"StatefulSet rollout: {replicas - spec} replicas pending termination")

    # kstatus returns Current for OnDelete before looking at any count; the pods must still be
    # ready, but nobody will replace them with the new revision, so the revision is not awaited.
    if text(obj, "spec", "updateStrategy", "type") == "OnDelete":
        return Health(State.CURRENT, f"StatefulSet ready: {ready} of {spec} replicas (OnDelete: updates not awaited)")

    partition = count(obj, "spec", "updateStrategy", "rollingUpdate", "partition")
    if partition > 0:
        wanted = max(spec - partition, 0)
        if updated < wanted:
            return Health(
                State.IN_PROGRESS,
                f"StatefulSet partitioned rollout: {updated} of {wanted} replicas updated (partition {partition})",
            )
        return Health(State.CURRENT, f"StatefulSet partitioned rollout complete: {updated} replicas updated")

    if current < spec:
        return Health(State.IN_PROGRESS, f"StatefulSet rollout: {current} of {spec} replicas at the current revision")
    current_rev = text(obj, "status", "currentRevision")
    update_rev = text(obj, "status", "updateRevision")
    if current_rev != update_rev:
        return Health(
            State.IN_PROGRESS,
            f"StatefulSet rollout: {updated} of {spec} replicas updated to revision {update_rev or '?'}"
            f" (current {current_rev or '?'})",
        )
    return Health(State.CURRENT, f"StatefulSet ready: {ready} of {spec} replicas at revision {current_rev}")


def _daemonset(obj: dict[str, Any], conds: Conditions) -> Health:
    if (early := _not_observed(obj, "DaemonSet")) is not None:
        return early
    desired = integer(obj, "status", "desiredNumberScheduled")
    if desired is None:
        return Health(State.IN_PROGRESS, "DaemonSet rollout: desired number of pods not yet computed")
    scheduled = count(obj, "status", "currentNumberScheduled")
    updated = count(obj, "status", "updatedNumberScheduled")
    available = count(obj, "status", "numberAvailable")
    ready = count(obj, "status", "numberReady")
    on_delete = text(obj, "spec", "updateStrategy", "type") == "OnDelete"

    if scheduled < desired:
        return Health(State.IN_PROGRESS, f"DaemonSet rollout: {scheduled} of {desired} pods scheduled")
    if updated < desired and not on_delete:
        return Health(State.IN_PROGRESS, f"DaemonSet rollout: {updated} of {desired} pods updated")
    if available < desired:
        return Health(State.IN_PROGRESS, f"DaemonSet rollout: {available} of {desired} pods available")
    if ready < desired:
        return Health(State.IN_PROGRESS, f"DaemonSet rollout: {ready} of {desired} pods ready")
    return Health(State.CURRENT, f"DaemonSet ready: {available} of {desired} pods available")


def _replicaset(obj: dict[str, Any], conds: Conditions) -> Health:
    if (early := _not_observed(obj, "ReplicaSet")) is not None:
        return early
    spec = count(obj, "spec", "replicas", default=1)
    replicas = count(obj, "status", "replicas")
    labeled = count(obj, "status", "fullyLabeledReplicas")
    available = count(obj, "status", "availableReplicas")
    ready = count(obj, "status", "readyReplicas")
    failure = conds.get("ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        # Usually quota or admission: it can clear without a change to the ReplicaSet (kstatus: InProgress).
        return Health(State.IN_PROGRESS, f"ReplicaSet cannot create pods{explain(failure)}")
    if labeled < spec:
        return Health(State.IN_PROGRESS, f"ReplicaSet: {labeled} of {spec} replicas labeled")
    if available < spec:
        return Health(State.IN_PROGRESS, f"ReplicaSet: {available} of {spec} replicas available")
    if ready < spec:
        return Health(State.IN_PROGRESS, f"ReplicaSet: {ready} of {spec} replicas ready")
    if replicas > spec:
        return Health(State.IN_PROGRESS, f"ReplicaSet: {replicas - spec} replicas pending termination")
    return Health(State.CURRENT, f"ReplicaSet available: {available} of {spec} replicas")


def _job(obj: dict[str, Any], conds: Conditions) -> Health:
    # FailureTarget / SuccessCriteriaMet (Kubernetes >= 1.31) precede Failed / Complete while
    # the job's pods are being cleaned up; the outcome is already decided.
    for kind in ("Failed", "FailureTarget"):
        if has(conds, kind, "True"):
            return Health(State.FAILED, f"Job failed{explain(conds[kind])}")
    succeeded = count(obj, "status", "succeeded")
    active = count(obj, "status", "active")
    failed = count(obj, "status", "failed")
    completions = integer(obj, "spec", "completions")
    done = f"{succeeded} of {completions}" if completions is not None else f"{succeeded}"
    for kind in ("Complete", "SuccessCriteriaMet"):
        if has(conds, kind, "True"):
            return Health(State.CURRENT, f"Job complete: {done} completions succeeded")
    # kstatus: a suspended Job is not in progress; nothing will happen until someone resumes it.
    if has(conds, "Suspended", "True") or get(obj, "spec", "suspend") is True:
        return Health(State.CURRENT, "Job is suspended")
    if not text(obj, "status", "startTime"):
        return Health(State.IN_PROGRESS, "Job not yet started")
    # kstatus calls a started Job Current; a GitOps wait wants it to finish, so it is InProgress.
    return Health(
        State.IN_PROGRESS,
        f"Job running: {done} completions succeeded, {active} active, {failed} failed",
    )


def _cronjob(obj: dict[str, Any], conds: Conditions) -> Health:
    suspended = " (suspended)" if get(obj, "spec", "suspend") is True else ""
    return Health(State.CURRENT, f"CronJob scheduled{suspended}")


def _pod(obj: dict[str, Any], conds: Conditions) -> Health:
    phase = text(obj, "status", "phase")
    if phase == "Succeeded":
        return Health(State.CURRENT, "Pod completed successfully")
    if phase == "Failed":
        # kstatus calls a finished Pod Current either way; a Pod we applied that failed is a failure.
        return Health(State.FAILED, f"Pod failed{_pod_failure(obj)}")
    if phase == "Running" and has(conds, "Ready", "True"):
        return Health(State.CURRENT, "Pod running and ready")
    for name, reason, message in _waiting(obj):
        if reason in _FAILING_WAITING_REASONS:
            detail = f": {message}" if message else ""
            return Health(State.FAILED, f"Pod container {name}: {reason}{detail}")
    if phase == "Running":
        return Health(State.IN_PROGRESS, f"Pod running but not ready{explain(conds.get('Ready'))}")
    if phase == "Pending":
        scheduled = conds.get("PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            # kstatus turns this into Failed after 15 s; that needs a clock, and a cluster
            # autoscaler often fixes it within the wait, so it stays InProgress here.
            return Health(State.IN_PROGRESS, f"Pod not scheduled{explain(scheduled)}")
        waiting = ", ".join(f"{name}: {reason}" for name, reason, _ in _waiting(obj) if reason)
        return Health(State.IN_PROGRESS, f"Pod pending ({waiting})" if waiting else "Pod pending")
    if phase == "":
        return Health(State.IN_PROGRESS, "Pod phase not yet reported")
    return Health(State.IN_PROGRESS, f"Pod phase is {phase}")


def _waiting(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for field in ("initContainerStatuses", "containerStatuses"):
        statuses = get(obj, "status", field)
        for cs in statuses if isinstance(statuses, list) else []:
            waiting = get(cs, "state", "waiting")
            if isinstance(waiting, dict):
                out.append((text(cs, "name") or "?", text(waiting, "reason"), text(waiting, "message")))
    return out


def _pod_failure(obj: dict[str, Any]) -> str:
    reason, message = text(obj, "status", "reason"), text(obj, "status", "message")
    if reason or message:  # evictions, deadline exceeded: the kubelet says why at pod level
        return ": " + ": ".join(p for p in (reason, message) if p)
    for field in ("initContainerStatuses", "containerStatuses"):
        statuses = get(obj, "status", field)
        for cs in statuses if isinstance(statuses, list) else []:
            term = get(cs, "state", "terminated")
            code = integer(term, "exitCode")
            if isinstance(term, dict) and code not in (None, 0):
                why = text(term, "reason") or "terminated"
                return f": container {text(cs, 'name') or '?'} {why} (exit code {code})"
    return ""


def _pvc(obj: dict[str, Any], conds: Conditions) -> Health:
    phase = text(obj, "status", "phase")
    if phase == "Bound":
        return Health(State.CURRENT, "PersistentVolumeClaim is bound")
    if phase == "Lost":
        # Its PersistentVolume is gone; nothing brings it back (kstatus: InProgress, Argo CD: Degraded).
        return Health(State.FAILED, "PersistentVolumeClaim lost its volume")
    return Health(State.IN_PROGRESS, f"PersistentVolumeClaim not yet bound (phase {phase or 'not reported'})")


def _service(obj: dict[str, Any], conds: Conditions) -> Health:
    kind = text(obj, "spec", "type") or "ClusterIP"
    if kind == "LoadBalancer":
        ingress = get(obj, "status", "loadBalancer", "ingress")
        if not (isinstance(ingress, list) and ingress):
            return Health(State.IN_PROGRESS, "Service type LoadBalancer has no external address yet")
    return Health(State.CURRENT, f"Service ready (type {kind})")


def _crd(obj: dict[str, Any], conds: Conditions) -> Health:
    names = conds.get("NamesAccepted")
    if names is not None and names.get("status") == "False":
        return Health(State.FAILED, f"CustomResourceDefinition names not accepted{explain(names)}")
    established = conds.get("Established")
    if established is not None and established.get("status") == "True":
        return Health(State.CURRENT, "CustomResourceDefinition established")
    if established is not None and established.get("status") == "False" and established.get("reason") != "Installing":
        return Health(State.FAILED, f"CustomResourceDefinition not established{explain(established)}")
    detail = explain(established) if established is not None else ""
    return Health(State.IN_PROGRESS, f"CustomResourceDefinition not yet established{detail}")


def _namespace(obj: dict[str, Any], conds: Conditions) -> Health:
    phase = text(obj, "status", "phase")
    if phase == "Active":
        return Health(State.CURRENT, "Namespace is active")
    if phase == "Terminating":
        return Health(State.TERMINATING, "Namespace is terminating")
    return Health(State.IN_PROGRESS, f"Namespace phase is {phase or 'not yet reported'}")


def _apiservice(obj: dict[str, Any], conds: Conditions) -> Health:
    if has(conds, "Available", "True"):
        return Health(State.CURRENT, "APIService available")
    # MissingEndpoints / FailedDiscoveryCheck clear once the backing Deployment is up.
    detail = explain(conds["Available"]) if "Available" in conds else ": no Available condition yet"
    return Health(State.IN_PROGRESS, f"APIService not available{detail}")


def _pdb(obj: dict[str, Any], conds: Conditions) -> Health:
    if (early := _not_observed(obj, "PodDisruptionBudget")) is not None:
        return early
    healthy = count(obj, "status", "currentHealthy")
    desired = count(obj, "status", "desiredHealthy")
    if healthy < desired:
        return Health(State.IN_PROGRESS, f"PodDisruptionBudget: {healthy} of {desired} required pods healthy")
    return Health(State.CURRENT, f"PodDisruptionBudget satisfied: {healthy} of {desired} required pods healthy")


RULES: dict[tuple[str, str], Rule] = {
    ("apps", "Deployment"): _deployment,
    ("extensions", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("extensions", "DaemonSet"): _daemonset,
    ("apps", "ReplicaSet"): _replicaset,
    ("extensions", "ReplicaSet"): _replicaset,
    ("batch", "Job"): _job,
    ("batch", "CronJob"): _cronjob,
    ("", "Pod"): _pod,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Service"): _service,
    ("", "Namespace"): _namespace,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("apiregistration.k8s.io", "APIService"): _apiservice,
    ("policy", "PodDisruptionBudget"): _pdb,
}
