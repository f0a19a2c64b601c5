"""Is an applied object ready?  kstatus-style readiness of one live object.

``wait: true`` must answer "did this revision roll out?" without knowing every CRD in the
cluster, so the rules follow kstatus (sigs.k8s.io/cli-utils ``pkg/kstatus/status``), the
convention Flux and the Kubernetes API guidelines share:

1. an object being deleted is Terminating, whatever else it says;
2. a status the controller wrote for an older spec (``observedGeneration`` behind
   ``metadata.generation``) says nothing about the current spec, so it is InProgress;
3. the generic conditions any controller may set win next: ``Stalled=True`` is Failed,
   ``Reconciling=True`` is InProgress;
4. built-in kinds, whose controllers predate those conditions, get rules of their own;
5. anything else is judged by its ``Ready`` condition, and an object without one is Current
   (ConfigMaps, RBAC, most CRs of "passive" kinds have nothing to wait for).

Where this deliberately differs from kstatus, the function says so and why.  The message is
one line meant for a status condition, an Event and a log line; it is built from counts,
condition reasons and condition messages, never from an object's data (Secret values cannot
reach it: Secrets are answered before anything of theirs is read).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MAX_MESSAGE = 500

# Waiting reasons that do not resolve on their own: the pod needs a new image, a fixed
# command or a fixed image name.  ErrImagePull and CreateContainerConfigError are left out on
# purpose: they are routinely transient right after an apply (registry hiccup, a Secret
# created a moment later in the same batch) and turn into the back-off reasons when they are not.
_FAILING_WAITING_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


class State(enum.StrEnum):
    """kstatus status of one object.

    A ``StrEnum`` (still a ``str`` and an ``Enum``) so that ``f"{state}"`` in a log line or a
    condition reads ``Current``, not ``State.CURRENT``.

    Failed means a controller reports an error it will not get past without a change (or a
    long wait): the rollout should be reported, though the object can still recover later.
    """

    CURRENT = "Current"
    IN_PROGRESS = "InProgress"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    NOT_FOUND = "NotFound"


@dataclass(frozen=True)
class Health:
    """A state and the one-line reason for it, ready to go into a condition or an Event."""

    state: State
    message: str


Conditions = dict[str, dict[str, Any]]
_Rule = Callable[[dict[str, Any], Conditions], Health]


def assess(obj: dict[str, Any] | None) -> Health:
    """Readiness of one live object as read from the API server (``None``: it does not exist).

    Never raises on odd shapes: a CR with a malformed status must give a health answer, not
    take the sync loop down.
    """
    if obj is None:
        return Health(State.NOT_FOUND, "object not found")
    health = _assess(obj)
    return Health(health.state, _one_line(health.message))


def _assess(obj: dict[str, Any]) -> Health:
    kind = _str(obj, "kind") or "Object"
    if _get(obj, "metadata", "deletionTimestamp"):
        finalizers = [f for f in _get(obj, "metadata", "finalizers") or [] if isinstance(f, str)]
        waiting = f"; waiting for finalizers: {', '.join(finalizers)}" if finalizers else ""
        return Health(State.TERMINATING, f"{kind} is being deleted{waiting}")

    group = _group(obj)
    if group == "" and kind in ("Secret", "ConfigMap"):
        # Nothing to wait for, and nothing of a Secret may be read into a message.
        return Health(State.CURRENT, f"{kind} exists")

    generation = _int(obj, "metadata", "generation")
    observed = _int(obj, "status", "observedGeneration")
    # kstatus compares with !=: a status from any other generation describes another spec.
    if generation is not None and observed is not None and generation != observed:
        return Health(
            State.IN_PROGRESS,
            f"{kind} generation {generation} not yet observed by its controller (observed {observed})",
        )

    conds = _conditions(obj)
    if _is(conds, "Stalled", "True"):
        return Health(State.FAILED, f"{kind} stalled{_explain(conds['Stalled'])}")
    if _is(conds, "Reconciling", "True"):
        return Health(State.IN_PROGRESS, f"{kind} reconciling{_explain(conds['Reconciling'])}")

    rule = _RULES.get((group, kind))
    if rule is not None:
        return rule(obj, conds)
    return _ready_condition(obj, conds, kind, generation)


def _ready_condition(obj: dict[str, Any], conds: Conditions, kind: str, generation: int | None) -> Health:
    ready = conds.get("Ready")
    if ready is None:
        return Health(State.CURRENT, f"{kind} has no readiness conditions; nothing to wait for")
    if ready.get("status") == "True":
        # metav1.Condition carries its own observedGeneration (Flux, cert-manager set it): a
        # Ready=True written for an older spec must not end the wait.
        cond_gen = ready.get("observedGeneration")
        if isinstance(cond_gen, int) and generation is not None and cond_gen < generation:
            return Health(
                State.IN_PROGRESS,
                f"{kind} Ready condition is for generation {cond_gen}, object is at generation {generation}",
            )
        return Health(State.CURRENT, f"{kind} is ready{_explain(ready)}")
    # Ready=False alone is not terminal: only Stalled (handled above) says the controller gave up.
    return Health(State.IN_PROGRESS, f"{kind} not ready{_explain(ready)}")


# --- built-in kinds ----------------------------------------------------------------------


def _not_observed(obj: dict[str, Any], kind: str) -> Health | None:
    """Workload controllers always write observedGeneration; until they do, nothing is known.

    kstatus insists on this for DaemonSets only; for the other workloads a status-less object
    with ``replicas: 0`` would otherwise look finished before any controller saw it.
    """
    if _int(obj, "status", "observedGeneration") is None:
        return Health(State.IN_PROGRESS, f"{kind} status not yet reported by its controller")
    return None


def _deployment(obj: dict[str, Any], conds: Conditions) -> Health:
    progressing = conds.get("Progressing")
    deadline = progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded"
    if deadline and _is(conds, "Progressing", "False"):
        return Health(State.FAILED, f"Deployment rollout failed{_explain(progressing)}")
    if (early := _not_observed(obj, "Deployment")) is not None:
        return early
    if _get(obj, "spec", "paused") is True:
        # A paused rollout is the user's explicit choice: it will not progress, so waiting
        # for it could only time out.  (Argo CD calls this Suspended; kstatus has no such state.)
        return Health(State.CURRENT, "Deployment is paused; its rollout is not awaited")

    spec = _count(obj, "spec", "replicas", default=1)
    replicas = _count(obj, "status", "replicas")
    updated = _count(obj, "status", "updatedReplicas")
    ready = _count(obj, "status", "readyReplicas")
    available = _count(obj, "status", "availableReplicas")
    failure = conds.get("ReplicaFailure")
    why = f" ({_reason(failure)})" if failure is not None and failure.get("status") == "True" else ""

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
    if _get(obj, "spec", "progressDeadlineSeconds") is not None and not (
        _is(conds, "Progressing", "True") and (progressing or {}).get("reason") == "NewReplicaSetAvailable"
    ):
        detail = _explain(progressing) if progressing is not None else ": no Progressing condition yet"
        return Health(State.IN_PROGRESS, f"Deployment rollout: new ReplicaSet not yet available{detail}")
    if not _is(conds, "Available", "True"):
        detail = _explain(conds["Available"]) if "Available" in conds else ": no Available condition yet"
        return Health(State.IN_PROGRESS, f"Deployment not available{detail}")
    return Health(State.CURRENT, f"Deployment available: {available} of {spec} replicas")


def _statefulset(obj: dict[str, Any], conds: Conditions) -> Health:
    if (early := _not_observed(obj, "StatefulSet")) is not None:
        return early
    spec = _count(obj, "spec", "replicas", default=1)
    replicas = _count(obj, "status", "replicas")
    ready = _count(obj, "status", "readyReplicas")
    current = _count(obj, "status", "currentReplicas")
    updated = _count(obj, "status", "updatedReplicas")
    available = _int(obj, "status", "availableReplicas")

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
    if _str(obj, "spec", "updateStrategy", "type") == "OnDelete":
        return Health(State.CURRENT, f"StatefulSet ready: {ready} of {spec} replicas (OnDelete: updates not awaited)")

    partition = _count(obj, "spec", "updateStrategy", "rollingUpdate", "partition")
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
    current_rev = _str(obj, "status", "currentRevision")
    update_rev = _str(obj, "status", "updateRevision")
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
    desired = _int(obj, "status", "desiredNumberScheduled")
    if desired is None:
        return Health(State.IN_PROGRESS, "DaemonSet rollout: desired number of pods not yet computed")
    scheduled = _count(obj, "status", "currentNumberScheduled")
    updated = _count(obj, "status", "updatedNumberScheduled")
    available = _count(obj, "status", "numberAvailable")
    ready = _count(obj, "status", "numberReady")
    on_delete = _str(obj, "spec", "updateStrategy", "type") == "OnDelete"

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
    spec = _count(obj, "spec", "replicas", default=1)
    replicas = _count(obj, "status", "replicas")
    labeled = _count(obj, "status", "fullyLabeledReplicas")
    available = _count(obj, "status", "availableReplicas")
    ready = _count(obj, "status", "readyReplicas")
    failure = conds.get("ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        # Usually quota or admission: it can clear without a change to the ReplicaSet (kstatus: InProgress).
        return Health(State.IN_PROGRESS, f"ReplicaSet cannot create pods{_explain(failure)}")
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
        if _is(conds, kind, "True"):
            return Health(State.FAILED, f"Job failed{_explain(conds[kind])}")
    succeeded = _count(obj, "status", "succeeded")
    active = _count(obj, "status", "active")
    failed = _count(obj, "status", "failed")
    completions = _int(obj, "spec", "completions")
    done = f"{succeeded} of {completions}" if completions is not None else f"{succeeded}"
    for kind in ("Complete", "SuccessCriteriaMet"):
        if _is(conds, kind, "True"):
            return Health(State.CURRENT, f"Job complete: {done} completions succeeded")
    # kstatus: a suspended Job is not in progress; nothing will happen until someone resumes it.
    if _is(conds, "Suspended", "True") or _get(obj, "spec", "suspend") is True:
        return Health(State.CURRENT, "Job is suspended")
    if not _str(obj, "status", "startTime"):
        return Health(State.IN_PROGRESS, "Job not yet started")
    # kstatus calls a started Job Current; a GitOps wait wants it to finish, so it is InProgress.
    return Health(
        State.IN_PROGRESS,
        f"Job running: {done} completions succeeded, {active} active, {failed} failed",
    )


def _cronjob(obj: dict[str, Any], conds: Conditions) -> Health:
    suspended = " (suspended)" if _get(obj, "spec", "suspend") is True else ""
    return Health(State.CURRENT, f"CronJob scheduled{suspended}")


def _pod(obj: dict[str, Any], conds: Conditions) -> Health:
    phase = _str(obj, "status", "phase")
    if phase == "Succeeded":
        return Health(State.CURRENT, "Pod completed successfully")
    if phase == "Failed":
        # kstatus calls a finished Pod Current either way; a Pod we applied that failed is a failure.
        return Health(State.FAILED, f"Pod failed{_pod_failure(obj)}")
    if phase == "Running" and _is(conds, "Ready", "True"):
        return Health(State.CURRENT, "Pod running and ready")
    for name, reason, message in _waiting(obj):
        if reason in _FAILING_WAITING_REASONS:
            detail = f": {message}" if message else ""
            return Health(State.FAILED, f"Pod container {name}: {reason}{detail}")
    if phase == "Running":
        return Health(State.IN_PROGRESS, f"Pod running but not ready{_explain(conds.get('Ready'))}")
    if phase == "Pending":
        scheduled = conds.get("PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            # kstatus turns this into Failed after 15 s; that needs a clock, and a cluster
            # autoscaler often fixes it within the wait, so it stays InProgress here.
            return Health(State.IN_PROGRESS, f"Pod not scheduled{_explain(scheduled)}")
        waiting = ", ".join(f"{name}: {reason}" for name, reason, _ in _waiting(obj) if reason)
        return Health(State.IN_PROGRESS, f"Pod pending ({waiting})" if waiting else "Pod pending")
    if phase == "":
        return Health(State.IN_PROGRESS, "Pod phase not yet reported")
    return Health(State.IN_PROGRESS, f"Pod phase is {phase}")


def _waiting(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for field in ("initContainerStatuses", "containerStatuses"):
        statuses = _get(obj, "status", field)
        for cs in statuses if isinstance(statuses, list) else []:
            waiting = _get(cs, "state", "waiting")
            if isinstance(waiting, dict):
                out.append((_str(cs, "name") or "?", _str(waiting, "reason"), _str(waiting, "message")))
    return out


def _pod_failure(obj: dict[str, Any]) -> str:
    reason, message = _str(obj, "status", "reason"), _str(obj, "status", "message")
    if reason or message:  # evictions, deadline exceeded: the kubelet says why at pod level
        return ": " + ": ".join(p for p in (reason, message) if p)
    for field in ("initContainerStatuses", "containerStatuses"):
        statuses = _get(obj, "status", field)
        for cs in statuses if isinstance(statuses, list) else []:
            term = _get(cs, "state", "terminated")
            code = _int(term, "exitCode")
            if isinstance(term, dict) and code not in (None, 0):
                why = _str(term, "reason") or "terminated"
                return f": container {_str(cs, 'name') or '?'} {why} (exit code {code})"
    return ""


def _pvc(obj: dict[str, Any], conds: Conditions) -> Health:
    phase = _str(obj, "status", "phase")
    if phase == "Bound":
        return Health(State.CURRENT, "PersistentVolumeClaim is bound")
    if phase == "Lost":
        # Its PersistentVolume is gone; nothing brings it back (kstatus: InProgress, Argo CD: Degraded).
        return Health(State.FAILED, "PersistentVolumeClaim lost its volume")
    return Health(State.IN_PROGRESS, f"PersistentVolumeClaim not yet bound (phase {phase or 'not reported'})")


def _service(obj: dict[str, Any], conds: Conditions) -> Health:
    kind = _str(obj, "spec", "type") or "ClusterIP"
    if kind == "LoadBalancer":
        ingress = _get(obj, "status", "loadBalancer", "ingress")
        if not (isinstance(ingress, list) and ingress):
            return Health(State.IN_PROGRESS, "Service type LoadBalancer has no external address yet")
    return Health(State.CURRENT, f"Service ready (type {kind})")


def _crd(obj: dict[str, Any], conds: Conditions) -> Health:
    names = conds.get("NamesAccepted")
    if names is not None and names.get("status") == "False":
        return Health(State.FAILED, f"CustomResourceDefinition names not accepted{_explain(names)}")
    established = conds.get("Established")
    if established is not None and established.get("status") == "True":
        return Health(State.CURRENT, "CustomResourceDefinition established")
    if established is not None and established.get("status") == "False" and established.get("reason") != "Installing":
        return Health(State.FAILED, f"CustomResourceDefinition not established{_explain(established)}")
    detail = _explain(established) if established is not None else ""
    return Health(State.IN_PROGRESS, f"CustomResourceDefinition not yet established{detail}")


def _namespace(obj: dict[str, Any], conds: Conditions) -> Health:
    phase = _str(obj, "status", "phase")
    if phase == "Active":
        return Health(State.CURRENT, "Namespace is active")
    if phase == "Terminating":
        return Health(State.TERMINATING, "Namespace is terminating")
    return Health(State.IN_PROGRESS, f"Namespace phase is {phase or 'not yet reported'}")


def _apiservice(obj: dict[str, Any], conds: Conditions) -> Health:
    if _is(conds, "Available", "True"):
        return Health(State.CURRENT, "APIService available")
    # MissingEndpoints / FailedDiscoveryCheck clear once the backing Deployment is up.
    detail = _explain(conds["Available"]) if "Available" in conds else ": no Available condition yet"
    return Health(State.IN_PROGRESS, f"APIService not available{detail}")


def _pdb(obj: dict[str, Any], conds: Conditions) -> Health:
    if (early := _not_observed(obj, "PodDisruptionBudget")) is not None:
        return early
    healthy = _count(obj, "status", "currentHealthy")
    desired = _count(obj, "status", "desiredHealthy")
    if healthy < desired:
        return Health(State.IN_PROGRESS, f"PodDisruptionBudget: {healthy} of {desired} required pods healthy")
    return Health(State.CURRENT, f"PodDisruptionBudget satisfied: {healthy} of {desired} required pods healthy")


_RULES: dict[tuple[str, str], _Rule] = {
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


# --- small readers that never raise --------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _str(obj: Any, *path: str) -> str:
    value = _get(obj, *path)
    return value if isinstance(value, str) else ""


def _int(obj: Any, *path: str) -> int | None:
    """An integer field; ``bool`` is rejected because JSON ``true`` must not count as 1."""
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _count(obj: Any, *path: str, default: int = 0) -> int:
    value = _int(obj, *path)
    return default if value is None else value


def _group(obj: dict[str, Any]) -> str:
    api_version = _str(obj, "apiVersion")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _conditions(obj: dict[str, Any]) -> Conditions:
    found = _get(obj, "status", "conditions")
    out: Conditions = {}
    for cond in found if isinstance(found, list) else []:
        if isinstance(cond, dict) and isinstance(cond.get("type"), str):
            out[cond["type"]] = cond
    return out


def _is(conds: Conditions, kind: str, status: str) -> bool:
    return kind in conds and conds[kind].get("status") == status


def _reason(cond: dict[str, Any] | None) -> str:
    """``"Reason: message"`` of a condition: operators grep for the reason, read the message."""
    if cond is None:
        return ""
    return ": ".join(p for p in (cond.get("reason"), cond.get("message")) if isinstance(p, str) and p)


def _explain(cond: dict[str, Any] | None) -> str:
    """The reason as a suffix (``": Reason: message"``), or nothing when the condition has none."""
    reason = _reason(cond)
    return f": {reason}" if reason else ""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."
