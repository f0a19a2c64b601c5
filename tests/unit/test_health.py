"""kstatus-style readiness: one case per kind and rule, on objects shaped like API server output."""

from __future__ import annotations

import base64
import copy
import dataclasses
from typing import Any

import pytest

from reconciler.sync import health
from reconciler.sync.health import State

T0 = "2026-03-02T10:14:07Z"
T1 = "2026-03-02T10:16:41Z"


def cond(type_: str, status: str, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": T1}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    c.update(extra)
    return c


def meta(name: str, namespace: str | None = "shop", generation: int | None = 1, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "name": name,
        "uid": "6f1c2a4e-9b7d-4a55-8e0f-3c2d1b0a9e87",
        "resourceVersion": "48211",
        "creationTimestamp": T0,
        "labels": {"app.kubernetes.io/name": name, "gitops.reconciler.dev/sync": "reconciler-system.addons"},
        "managedFields": [
            {
                "manager": "gitops-reconciler",
                "operation": "Apply",
                "apiVersion": "v1",
                "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app.kubernetes.io/name": {}}}},
            }
        ],
    }
    if namespace is not None:
        m["namespace"] = namespace
    if generation is not None:
        m["generation"] = generation
    m.update(extra)
    return m


def pod_template(image: str = "ghcr.io/acme/web:1.4.2") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "securityContext": {},
        },
    }


# --- Deployment ----------------------------------------------------------------------------


def deployment(
    replicas: int | None = 3,
    *,
    generation: int = 3,
    observed: int | None = 3,
    status_replicas: int = 3,
    updated: int = 3,
    ready: int = 3,
    available: int = 3,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
        "template": pod_template(),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    status: dict[str, Any] = {
        "replicas": status_replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": conditions
        if conditions is not None
        else [
            cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
            cond(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                'ReplicaSet "web-7c5ddbdf54" has successfully progressed.',
            ),
        ],
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", generation=generation, annotations={"deployment.kubernetes.io/revision": "3"}),
        "spec": spec,
        "status": status,
    }


ROLLING = [
    cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
    cond("Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "web-6b9f7c8d4" is progressing.'),
]


def test_none_is_not_found() -> None:
    h = health.assess(None)
    assert h.state is State.NOT_FOUND
    assert h.message


def test_deployment_rolled_out_is_current() -> None:
    h = health.assess(deployment())
    assert h == health.Health(State.CURRENT, "Deployment available: 3 of 3 replicas")


def test_deployment_waiting_for_available_replicas_names_counts() -> None:
    h = health.assess(deployment(ready=1, available=1, conditions=ROLLING))
    assert h.state is State.IN_PROGRESS
    assert h.message == "Deployment rollout: 1 of 3 updated replicas available"


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (
            {"status_replicas": 1, "updated": 1, "ready": 1, "available": 1},
            "Deployment rollout: 1 of 3 replicas created",
        ),
        (
            {"status_replicas": 4, "updated": 1, "ready": 3, "available": 3},
            "Deployment rollout: 1 of 3 replicas updated",
        ),
        ({"status_replicas": 4, "updated": 3, "ready": 3, "available": 3}, "1 old replicas pending termination"),
        ({"status_replicas": 3, "updated": 3, "ready": 2, "available": 3}, "Deployment rollout: 2 of 3 replicas ready"),
    ],
)
def test_deployment_rollout_in_progress(counts: dict[str, int], message: str) -> None:
    h = health.assess(deployment(conditions=ROLLING, **counts))
    assert h.state is State.IN_PROGRESS
    assert message in h.message


def test_deployment_progress_deadline_exceeded_is_failed_with_reason() -> None:
    conds = [
        cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
        cond(
            "Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-6b9f7c8d4" has timed out progressing.'
        ),
    ]
    h = health.assess(deployment(updated=1, ready=0, available=0, status_replicas=3, conditions=conds))
    assert h.state is State.FAILED
    assert "ProgressDeadlineExceeded" in h.message
    assert 'ReplicaSet "web-6b9f7c8d4" has timed out progressing.' in h.message


def test_deployment_new_spec_overrides_old_deadline_failure() -> None:
    conds = [cond("Progressing", "False", "ProgressDeadlineExceeded", "timed out")]
    h = health.assess(deployment(generation=4, observed=3, conditions=conds))
    assert h.state is State.IN_PROGRESS
    assert h.message == "Deployment generation 4 not yet observed by its controller (observed 3)"


def test_deployment_replicas_default_to_one() -> None:
    pending = deployment(None, status_replicas=0, updated=0, ready=0, available=0, conditions=[])
    assert health.assess(pending).state is State.IN_PROGRESS
    assert "0 of 1 replicas" in health.assess(pending).message
    done = deployment(None, status_replicas=1, updated=1, ready=1, available=1)
    assert health.assess(done) == health.Health(State.CURRENT, "Deployment available: 1 of 1 replicas")


def test_deployment_scaled_to_zero_is_current() -> None:
    h = health.assess(deployment(0, status_replicas=0, updated=0, ready=0, available=0))
    assert h.state is State.CURRENT


def test_deployment_paused_is_current() -> None:
    obj = deployment(updated=1, ready=1, available=1, conditions=[cond("Progressing", "Unknown", "DeploymentPaused")])
    obj["spec"]["paused"] = True
    h = health.assess(obj)
    assert h.state is State.CURRENT
    assert "paused" in h.message


def test_deployment_without_observed_generation_is_not_yet_seen() -> None:
    obj = deployment(0, observed=None, status_replicas=0, updated=0, ready=0, available=0, conditions=[])
    h = health.assess(obj)
    assert h.state is State.IN_PROGRESS
    assert "not yet reported" in h.message


def test_deployment_counts_done_but_new_replicaset_not_yet_available() -> None:
    h = health.assess(deployment(conditions=ROLLING))
    assert h.state is State.IN_PROGRESS
    assert "ReplicaSetUpdated" in h.message


def test_deployment_not_available_names_condition() -> None:
    conds = [
        cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
        ROLLING[1] | {"reason": "NewReplicaSetAvailable"},
    ]
    h = health.assess(deployment(conditions=conds))
    assert h.state is State.IN_PROGRESS
    assert h.message.startswith("Deployment not available: MinimumReplicasUnavailable")


def test_deployment_without_progress_deadline_relies_on_counts() -> None:
    obj = deployment(conditions=[cond("Available", "True", "MinimumReplicasAvailable")])
    del obj["spec"]["progressDeadlineSeconds"]
    assert health.assess(obj).state is State.CURRENT


def test_deployment_replica_failure_is_explained() -> None:
    conds = [
        *ROLLING,
        cond("ReplicaFailure", "True", "FailedCreate", 'pods "web-6b9f7c8d4-" is forbidden: exceeded quota: compute'),
    ]
    h = health.assess(deployment(status_replicas=0, updated=0, ready=0, available=0, conditions=conds))
    assert h.state is State.IN_PROGRESS
    assert "0 of 3 replicas created (FailedCreate: pods" in h.message
    assert "exceeded quota" in h.message


def test_kind_in_another_group_is_not_a_deployment() -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Deployment",
        "metadata": meta("x"),
        "status": {"observedGeneration": 1, "conditions": [cond("Ready", "True", "Succeeded")]},
    }
    assert health.assess(obj) == health.Health(State.CURRENT, "Deployment is ready: Succeeded")


# --- generic rules -------------------------------------------------------------------------


def test_deletion_timestamp_is_terminating_and_names_finalizers() -> None:
    obj = deployment()
    obj["metadata"]["deletionTimestamp"] = T1
    obj["metadata"]["finalizers"] = ["foregroundDeletion"]
    h = health.assess(obj)
    assert h.state is State.TERMINATING
    assert h.message == "Deployment is being deleted; waiting for finalizers: foregroundDeletion"


def test_generation_behind_is_in_progress_for_any_kind() -> None:
    obj = kustomization(ready=cond("Ready", "True", "ReconciliationSucceeded", "Applied revision: main@sha1:ab12"))
    obj["metadata"]["generation"] = 5
    h = health.assess(obj)
    assert h.state is State.IN_PROGRESS
    assert h.message == "Kustomization generation 5 not yet observed by its controller (observed 2)"


def test_observed_generation_ahead_is_also_not_trusted() -> None:
    assert health.assess(deployment(generation=3, observed=4)).state is State.IN_PROGRESS


def kustomization(*conds: dict[str, Any], ready: dict[str, Any] | None = None) -> dict[str, Any]:
    conditions = [*conds] + ([ready] if ready else [])
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": meta("apps", namespace="flux-system", generation=2, finalizers=["finalizers.fluxcd.io"]),
        "spec": {
            "interval": "10m",
            "path": "./apps",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
        },
        "status": {"observedGeneration": 2, "conditions": conditions},
    }


def test_custom_resource_ready_true_is_current() -> None:
    obj = kustomization(ready=cond("Ready", "True", "ReconciliationSucceeded", "Applied revision: main@sha1:ab12"))
    h = health.assess(obj)
    assert h.state is State.CURRENT
    assert "ReconciliationSucceeded" in h.message


def test_custom_resource_ready_false_is_in_progress_with_reason() -> None:
    obj = kustomization(
        ready=cond("Ready", "False", "DependencyNotReady", "dependency 'flux-system/infra' is not ready")
    )
    h = health.assess(obj)
    assert h.state is State.IN_PROGRESS
    assert h.message == "Kustomization not ready: DependencyNotReady: dependency 'flux-system/infra' is not ready"


def test_custom_resource_ready_unknown_is_in_progress() -> None:
    obj = kustomization(ready=cond("Ready", "Unknown", "Progressing", "Reconciliation in progress"))
    assert health.assess(obj).state is State.IN_PROGRESS


def test_stalled_true_is_failed_even_when_ready_false() -> None:
    obj = kustomization(
        cond("Stalled", "True", "BuildFailed", "kustomize build failed: accumulating resources"),
        ready=cond("Ready", "False", "BuildFailed", "kustomize build failed: accumulating resources"),
    )
    h = health.assess(obj)
    assert h.state is State.FAILED
    assert h.message == "Kustomization stalled: BuildFailed: kustomize build failed: accumulating resources"


def test_reconciling_true_is_in_progress_even_when_ready_true() -> None:
    obj = kustomization(
        cond("Reconciling", "True", "Progressing", "Fetching manifests for revision main@sha1:cd34"),
        ready=cond("Ready", "True", "ReconciliationSucceeded"),
    )
    h = health.assess(obj)
    assert h.state is State.IN_PROGRESS
    assert "Fetching manifests" in h.message


def test_stalled_and_reconciling_false_are_ignored() -> None:
    obj = kustomization(cond("Stalled", "False"), cond("Reconciling", "False"), ready=cond("Ready", "True"))
    assert health.assess(obj).state is State.CURRENT


def test_ready_condition_from_an_older_generation_is_not_trusted() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta("web-tls", generation=3),
        "spec": {"secretName": "web-tls", "dnsNames": ["shop.example.com"], "issuerRef": {"name": "letsencrypt"}},
        "status": {"conditions": [cond("Ready", "True", "Ready", "Certificate is up to date", observedGeneration=2)]},
    }
    h = health.assess(obj)
    assert h.state is State.IN_PROGRESS
    assert "generation 2" in h.message
    obj["status"]["conditions"][0]["observedGeneration"] = 3
    assert health.assess(obj).state is State.CURRENT


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("cfg"), "data": {"a": "b"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("web")},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta("reader", namespace=None),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta("web"),
            "status": {
                "currentReplicas": 3,
                "desiredReplicas": 3,
                "conditions": [cond("AbleToScale", "True", "ReadyForNewScale"), cond("ScalingActive", "True")],
            },
        },
    ],
    ids=["ConfigMap", "ServiceAccount", "ClusterRole", "HPA-conditions-without-Ready"],
)
def test_objects_without_readiness_conditions_are_current(obj: dict[str, Any]) -> None:
    assert health.assess(obj).state is State.CURRENT


# --- Secret: never a value in a message ----------------------------------------------------

PLAIN = "hunter2-Pr0d-DB-pass"
B64 = base64.b64encode(PLAIN.encode()).decode()


def secret(**extra: Any) -> dict[str, Any]:
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": meta(
            "db",
            generation=None,
            annotations={
                "kubectl.kubernetes.io/last-applied-configuration": f'{{"stringData":{{"password":"{PLAIN}"}}}}'
            },
        ),
        "data": {"password": B64, "username": base64.b64encode(b"shop").decode()},
    }
    obj.update(extra)
    return obj


@pytest.mark.parametrize(
    "obj",
    [
        secret(),
        # a Secret never has a status; if a webhook or a bug put one there, nothing of it may leak
        secret(status={"conditions": [cond("Ready", "False", PLAIN, B64)], "observedGeneration": PLAIN}),
        secret(status={"conditions": [cond("Stalled", "True", PLAIN, B64)]}),
    ],
)
def test_secret_is_current_and_its_values_never_reach_the_message(obj: dict[str, Any]) -> None:
    h = health.assess(obj)
    assert h.state is State.CURRENT
    assert PLAIN not in repr(h)
    assert B64 not in repr(h)


def test_deleted_secret_message_has_no_value() -> None:
    obj = secret()
    obj["metadata"]["deletionTimestamp"] = T1
    h = health.assess(obj)
    assert h.state is State.TERMINATING
    assert PLAIN not in repr(h)
    assert B64 not in repr(h)


# --- StatefulSet ---------------------------------------------------------------------------


def statefulset(*, spec_replicas: int = 3, strategy: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "observedGeneration": 2,
        "replicas": 3,
        "readyReplicas": 3,
        "currentReplicas": 3,
        "updatedReplicas": 3,
        "availableReplicas": 3,
        "currentRevision": "db-5c4d8f9b7",
        "updateRevision": "db-5c4d8f9b7",
        "collisionCount": 0,
    }
    st.update(status)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta("db", generation=2),
        "spec": {
            "replicas": spec_replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "db"}},
            "template": pod_template("postgres:16.4"),
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        },
        "status": {k: v for k, v in st.items() if v is not None},
    }


def test_statefulset_rolled_out_is_current() -> None:
    h = health.assess(statefulset())
    assert h.state is State.CURRENT
    assert "db-5c4d8f9b7" in h.message


def test_statefulset_revision_mismatch_is_in_progress() -> None:
    h = health.assess(statefulset(updateRevision="db-7f6e5d4c3", updatedReplicas=1))
    assert h.state is State.IN_PROGRESS
    assert h.message == "StatefulSet rollout: 1 of 3 replicas updated to revision db-7f6e5d4c3 (current db-5c4d8f9b7)"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"replicas": 2, "readyReplicas": 2, "currentReplicas": 2}, "StatefulSet rollout: 2 of 3 replicas created"),
        ({"readyReplicas": 1}, "StatefulSet rollout: 1 of 3 replicas ready"),
        ({"availableReplicas": 2}, "StatefulSet rollout: 2 of 3 replicas available"),
        ({"replicas": 4}, "StatefulSet rollout: 1 replicas pending termination"),
        ({"currentReplicas": 2}, "StatefulSet rollout: 2 of 3 replicas at the current revision"),
    ],
)
def test_statefulset_counts(status: dict[str, Any], message: str) -> None:
    h = health.assess(statefulset(**status))
    assert h == health.Health(State.IN_PROGRESS, message)


def test_statefulset_availability_is_optional_on_old_servers() -> None:
    assert health.assess(statefulset(availableReplicas=None)).state is State.CURRENT


def test_statefulset_on_delete_does_not_await_the_new_revision() -> None:
    obj = statefulset(strategy={"type": "OnDelete"}, updateRevision="db-7f6e5d4c3", updatedReplicas=0)
    h = health.assess(obj)
    assert h.state is State.CURRENT
    assert "OnDelete" in h.message


def test_statefulset_on_delete_still_waits_for_ready_pods() -> None:
    assert health.assess(statefulset(strategy={"type": "OnDelete"}, readyReplicas=2)).state is State.IN_PROGRESS


def test_statefulset_partitioned_rollout() -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    rolling = statefulset(strategy=strategy, updateRevision="db-7f6e5d4c3", updatedReplicas=0)
    h = health.assess(rolling)
    assert h == health.Health(
        State.IN_PROGRESS, "StatefulSet partitioned rollout: 0 of 1 replicas updated (partition 2)"
    )
    done = statefulset(strategy=strategy, updateRevision="db-7f6e5d4c3", updatedReplicas=1)
    assert health.assess(done).state is State.CURRENT


# --- DaemonSet -----------------------------------------------------------------------------


def daemonset(strategy: str = "RollingUpdate", **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "currentNumberScheduled": 4,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 4,
        "numberReady": 4,
        "observedGeneration": 1,
        "updatedNumberScheduled": 4,
        "numberAvailable": 4,
    }
    st.update(status)
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": meta("node-exporter", namespace="monitoring"),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "node-exporter"}},
            "template": pod_template("quay.io/prometheus/node-exporter:v1.8.2"),
            "updateStrategy": {"type": strategy}
            | ({"rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}} if strategy == "RollingUpdate" else {}),
            "revisionHistoryLimit": 10,
        },
        "status": {k: v for k, v in st.items() if v is not None},
    }


def test_daemonset_rolled_out_is_current() -> None:
    assert health.assess(daemonset()) == health.Health(State.CURRENT, "DaemonSet ready: 4 of 4 pods available")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"currentNumberScheduled": 3}, "DaemonSet rollout: 3 of 4 pods scheduled"),
        ({"updatedNumberScheduled": 1}, "DaemonSet rollout: 1 of 4 pods updated"),
        ({"numberAvailable": 2}, "DaemonSet rollout: 2 of 4 pods available"),
        ({"numberReady": 3}, "DaemonSet rollout: 3 of 4 pods ready"),
        ({"desiredNumberScheduled": None}, "DaemonSet rollout: desired number of pods not yet computed"),
        ({"observedGeneration": None}, "DaemonSet status not yet reported by its controller"),
    ],
)
def test_daemonset_in_progress(status: dict[str, Any], message: str) -> None:
    assert health.assess(daemonset(**status)) == health.Health(State.IN_PROGRESS, message)


def test_daemonset_on_delete_does_not_await_updates() -> None:
    assert health.assess(daemonset("OnDelete", updatedNumberScheduled=0)).state is State.CURRENT


# --- ReplicaSet ----------------------------------------------------------------------------


def replicaset(**status: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "observedGeneration": 1,
    }
    st.update(status)
    st = {k: v for k, v in st.items() if v is not None}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": meta("web-7c5ddbdf54", ownerReferences=[{"kind": "Deployment", "name": "web", "controller": True}]),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
            "template": pod_template(),
        },
        "status": st,
    }


def test_replicaset_available_is_current() -> None:
    assert health.assess(replicaset()).state is State.CURRENT


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"fullyLabeledReplicas": 1}, "ReplicaSet: 1 of 2 replicas labeled"),
        ({"availableReplicas": 1}, "ReplicaSet: 1 of 2 replicas available"),
        ({"readyReplicas": 1}, "ReplicaSet: 1 of 2 replicas ready"),
        ({"replicas": 3}, "ReplicaSet: 1 replicas pending termination"),
    ],
)
def test_replicaset_in_progress(status: dict[str, Any], message: str) -> None:
    assert health.assess(replicaset(**status)) == health.Health(State.IN_PROGRESS, message)


def test_replicaset_without_observed_generation_is_not_yet_seen() -> None:
    assert health.assess(replicaset(observedGeneration=None)) == health.Health(
        State.IN_PROGRESS, "ReplicaSet status not yet reported by its controller"
    )


def test_replicaset_replica_failure_names_reason() -> None:
    obj = replicaset(
        replicas=0,
        availableReplicas=0,
        conditions=[cond("ReplicaFailure", "True", "FailedCreate", 'pods "web-" is forbidden: exceeded quota')],
    )
    h = health.assess(obj)
    assert h.state is State.IN_PROGRESS
    assert h.message == 'ReplicaSet cannot create pods: FailedCreate: pods "web-" is forbidden: exceeded quota'


# --- Job and CronJob -----------------------------------------------------------------------


def job(*conds: dict[str, Any], suspend: bool = False, **status: Any) -> dict[str, Any]:
    st: dict[str, Any] = {"startTime": T0, "active": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}
    st.update(status)
    if conds:
        st["conditions"] = list(conds)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta("migrate", labels={"batch.kubernetes.io/job-name": "migrate"}),
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "suspend": suspend,
            "template": pod_template("ghcr.io/acme/migrate:7") | {"spec": {"restartPolicy": "Never", "containers": []}},
        },
        "status": st,
    }


def test_job_complete_is_current() -> None:
    obj = job(
        cond("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
        cond("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods"),
        active=0,
        succeeded=1,
        completionTime=T1,
    )
    assert health.assess(obj) == health.Health(State.CURRENT, "Job complete: 1 of 1 completions succeeded")


def test_job_failed_is_failed_with_reason() -> None:
    obj = job(
        cond("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        cond("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        active=0,
        failed=7,
    )
    h = health.assess(obj)
    assert h == health.Health(
        State.FAILED, "Job failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
    )


def test_job_failure_target_alone_is_already_failed() -> None:
    obj = job(cond("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline"))
    assert health.assess(obj).state is State.FAILED


def test_job_running_is_in_progress() -> None:
    h = health.assess(job(failed=1))
    assert h == health.Health(State.IN_PROGRESS, "Job running: 0 of 1 completions succeeded, 1 active, 1 failed")


def test_job_not_started_is_in_progress() -> None:
    obj = job(active=0)
    del obj["status"]["startTime"]
    assert health.assess(obj) == health.Health(State.IN_PROGRESS, "Job not yet started")


def test_job_without_completions_counts_successes_only() -> None:
    obj = job(succeeded=3)
    del obj["spec"]["completions"]
    assert "3 completions succeeded" in health.assess(obj).message


def test_job_suspended_is_current() -> None:
    by_condition = job(cond("Suspended", "True", "JobSuspended", "Job suspended"), suspend=True, active=0)
    assert health.assess(by_condition) == health.Health(State.CURRENT, "Job is suspended")
    just_created = job(suspend=True, active=0)
    del just_created["status"]["startTime"]
    assert health.assess(just_created).state is State.CURRENT


def test_cronjob_is_current() -> None:
    obj = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta("backup"),
        "spec": {"schedule": "17 3 * * *", "suspend": False, "jobTemplate": {"spec": {"template": pod_template()}}},
        "status": {"lastScheduleTime": T0, "lastSuccessfulTime": T1},
    }
    assert health.assess(obj).state is State.CURRENT


# --- Pod -----------------------------------------------------------------------------------


def pod(
    phase: str | None, *conds: dict[str, Any], waiting: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": T1}} if waiting is None else {"waiting": waiting}
    st: dict[str, Any] = {
        "hostIP": "10.0.3.17",
        "podIP": "10.244.1.23",
        "qosClass": "Burstable",
        "startTime": T0,
        "conditions": list(conds),
        "containerStatuses": [
            {
                "name": "web",
                "image": "ghcr.io/acme/web:1.4.2",
                "imageID": "",
                "ready": False,
                "restartCount": 4,
                "started": False,
                "state": state,
                "lastState": {},
                "containerID": "containerd://3b1e",
            }
        ],
    }
    if phase is not None:
        st["phase"] = phase
    st.update(status)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta("web-7c5ddbdf54-x2kqp", generation=None),
        "spec": pod_template()["spec"] | {"nodeName": "worker-2"},
        "status": st,
    }


READY = [
    cond("Initialized", "True"),
    cond("Ready", "True"),
    cond("ContainersReady", "True"),
    cond("PodScheduled", "True"),
]
NOT_READY = [
    cond("Initialized", "True"),
    cond("Ready", "False", "ContainersNotReady", "containers with unready status: [web]"),
    cond("ContainersReady", "False", "ContainersNotReady", "containers with unready status: [web]"),
    cond("PodScheduled", "True"),
]


def test_pod_running_and_ready_is_current() -> None:
    assert health.assess(pod("Running", *READY)) == health.Health(State.CURRENT, "Pod running and ready")


def test_pod_succeeded_is_current() -> None:
    terminated = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": T0, "finishedAt": T1}}
    obj = pod("Succeeded", *NOT_READY)
    obj["status"]["containerStatuses"][0]["state"] = terminated
    assert health.assess(obj).state is State.CURRENT


def test_pod_failed_names_the_terminated_container() -> None:
    obj = pod("Failed", *NOT_READY)
    obj["status"]["containerStatuses"][0]["state"] = {
        "terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": T0, "finishedAt": T1}
    }
    assert health.assess(obj) == health.Health(State.FAILED, "Pod failed: container web OOMKilled (exit code 137)")


def test_pod_evicted_uses_the_pod_level_reason() -> None:
    obj = pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert health.assess(obj) == health.Health(
        State.FAILED, "Pod failed: Evicted: The node was low on resource: memory."
    )


def test_pod_crash_loop_is_failed_with_reason() -> None:
    waiting = {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container=web pod=web-x2kqp"}
    h = health.assess(pod("Running", *NOT_READY, waiting=waiting))
    assert h.state is State.FAILED
    assert h.message.startswith("Pod container web: CrashLoopBackOff: back-off 2m40s")


def test_pod_image_pull_back_off_while_pending_is_failed() -> None:
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "ghcr.io/acme/web:1.4.3"'}
    h = health.assess(pod("Pending", *NOT_READY, waiting=waiting))
    assert h == health.Health(
        State.FAILED, 'Pod container web: ImagePullBackOff: Back-off pulling image "ghcr.io/acme/web:1.4.3"'
    )


def test_pod_init_container_crash_loop_is_failed() -> None:
    obj = pod("Pending", *NOT_READY, waiting={"reason": "PodInitializing"})
    obj["status"]["initContainerStatuses"] = [
        {"name": "migrate", "ready": False, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    ]
    assert health.assess(obj) == health.Health(State.FAILED, "Pod container migrate: CrashLoopBackOff")


def test_pod_first_image_pull_error_is_still_in_progress() -> None:
    h = health.assess(pod("Pending", *NOT_READY, waiting={"reason": "ErrImagePull", "message": "rpc error"}))
    assert h == health.Health(State.IN_PROGRESS, "Pod pending (web: ErrImagePull)")


def test_pod_running_not_ready_is_in_progress() -> None:
    h = health.assess(pod("Running", *NOT_READY))
    assert h == health.Health(
        State.IN_PROGRESS, "Pod running but not ready: ContainersNotReady: containers with unready status: [web]"
    )


def test_pod_running_without_conditions_yet_is_in_progress() -> None:
    assert health.assess(pod("Running")) == health.Health(State.IN_PROGRESS, "Pod running but not ready")


def test_pod_unschedulable_is_in_progress_with_scheduler_message() -> None:
    msg = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available."
    obj = pod("Pending", cond("PodScheduled", "False", "Unschedulable", msg))
    del obj["status"]["containerStatuses"]
    assert health.assess(obj) == health.Health(State.IN_PROGRESS, f"Pod not scheduled: Unschedulable: {msg}")


def test_pod_creating_is_in_progress() -> None:
    h = health.assess(pod("Pending", cond("PodScheduled", "True"), waiting={"reason": "ContainerCreating"}))
    assert h == health.Health(State.IN_PROGRESS, "Pod pending (web: ContainerCreating)")


def test_pod_without_phase_or_with_unknown_phase() -> None:
    assert health.assess(pod(None)).message == "Pod phase not yet reported"
    assert health.assess(pod("Unknown")) == health.Health(State.IN_PROGRESS, "Pod phase is Unknown")


# --- PVC, Service, CRD, Namespace, APIService, PDB -----------------------------------------


def pvc(phase: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta("data-db-0", generation=None, finalizers=["kubernetes.io/pvc-protection"]),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": "gp3",
            "volumeMode": "Filesystem",
        },
        "status": {},
    }
    if phase:
        obj["status"] = {"phase": phase}
    if phase == "Bound":
        obj["spec"]["volumeName"] = "pvc-0b4e6a0e"
        obj["status"].update({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}})
    return obj


@pytest.mark.parametrize(
    ("phase", "state"),
    [("Bound", State.CURRENT), ("Pending", State.IN_PROGRESS), (None, State.IN_PROGRESS), ("Lost", State.FAILED)],
)
def test_pvc(phase: str | None, state: State) -> None:
    h = health.assess(pvc(phase))
    assert h.state is state
    assert "PersistentVolumeClaim" in h.message


def service(type_: str, ingress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": type_,
        "selector": {"app.kubernetes.io/name": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        "clusterIP": "10.96.14.7",
        "clusterIPs": ["10.96.14.7"],
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
    }
    if type_ == "ExternalName":
        spec = {"type": type_, "externalName": "db.example.com", "sessionAffinity": "None"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("web", generation=None),
        "spec": spec,
        "status": {"loadBalancer": {"ingress": ingress} if ingress is not None else {}},
    }


@pytest.mark.parametrize(
    ("svc", "state"),
    [
        (service("ClusterIP"), State.CURRENT),
        (service("NodePort"), State.CURRENT),
        (service("ExternalName"), State.CURRENT),
        (service("LoadBalancer"), State.IN_PROGRESS),
        (service("LoadBalancer", []), State.IN_PROGRESS),
        (service("LoadBalancer", [{"hostname": "a1b2-123.eu-west-1.elb.amazonaws.com"}]), State.CURRENT),
        (service("LoadBalancer", [{"ip": "203.0.113.10", "ipMode": "VIP"}]), State.CURRENT),
    ],
    ids=["ClusterIP", "NodePort", "ExternalName", "LB-pending", "LB-empty", "LB-hostname", "LB-ip"],
)
def test_service(svc: dict[str, Any], state: State) -> None:
    assert health.assess(svc).state is state


def crd(*conds: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta("gitsyncs.gitops.reconciler.dev", namespace=None),
        "spec": {
            "group": "gitops.reconciler.dev",
            "names": {"kind": "GitSync", "listKind": "GitSyncList", "plural": "gitsyncs", "singular": "gitsync"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
        "status": {
            "acceptedNames": {"kind": "GitSync", "plural": "gitsyncs"},
            "storedVersions": ["v1"],
            "conditions": list(conds),
        },
    }


def test_crd_established_is_current() -> None:
    obj = crd(
        cond("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
        cond("Established", "True", "InitialNamesAccepted", "the initial names have been accepted"),
    )
    assert health.assess(obj) == health.Health(State.CURRENT, "CustomResourceDefinition established")


def test_crd_names_conflict_is_failed() -> None:
    obj = crd(
        cond("NamesAccepted", "False", "ListKindConflict", '"GitSyncList" is already in use'),
        cond("Established", "False", "NotAccepted", "not all names are accepted"),
    )
    h = health.assess(obj)
    assert h.state is State.FAILED
    assert "ListKindConflict" in h.message


def test_crd_installing_and_unobserved_are_in_progress() -> None:
    installing = crd(cond("NamesAccepted", "True", "NoConflicts"), cond("Established", "False", "Installing"))
    assert health.assess(installing).state is State.IN_PROGRESS
    assert health.assess(crd()).state is State.IN_PROGRESS


def test_crd_not_established_for_another_reason_is_failed() -> None:
    assert health.assess(crd(cond("Established", "False", "NotAccepted"))).state is State.FAILED


def namespace(phase: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta("shop", namespace=None, generation=None),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": phase} if phase else {},
    }


def test_namespace() -> None:
    assert health.assess(namespace("Active")).state is State.CURRENT
    assert health.assess(namespace(None)).state is State.IN_PROGRESS
    assert health.assess(namespace("Terminating")).state is State.TERMINATING
    deleting = namespace("Terminating")
    deleting["metadata"]["deletionTimestamp"] = T1
    assert health.assess(deleting).state is State.TERMINATING


def apiservice(*conds: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": meta("v1beta1.metrics.k8s.io", namespace=None, generation=None),
        "spec": {
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
        },
        "status": {"conditions": list(conds)},
    }


def test_apiservice() -> None:
    assert health.assess(apiservice(cond("Available", "True", "Passed", "all checks passed"))).state is State.CURRENT
    failing = apiservice(
        cond("Available", "False", "FailedDiscoveryCheck", "failing or missing response from https://10.96.0.9:443")
    )
    h = health.assess(failing)
    assert h.state is State.IN_PROGRESS
    assert "FailedDiscoveryCheck" in h.message
    assert health.assess(apiservice()).state is State.IN_PROGRESS


def pdb(healthy: int, desired: int, observed: int | None = 1) -> dict[str, Any]:
    status: dict[str, Any] = {
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": max(healthy - desired, 0),
        "expectedPods": 3,
        "conditions": [cond("DisruptionAllowed", "True" if healthy > desired else "False", "SufficientPods")],
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta("web"),
        "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}},
        "status": status,
    }


def test_pdb() -> None:
    assert health.assess(pdb(3, 2)).state is State.CURRENT
    assert health.assess(pdb(2, 2)).state is State.CURRENT
    assert health.assess(pdb(1, 2)) == health.Health(
        State.IN_PROGRESS, "PodDisruptionBudget: 1 of 2 required pods healthy"
    )
    assert health.assess(pdb(3, 2, observed=None)).state is State.IN_PROGRESS


# --- robustness and message shape ----------------------------------------------------------


def test_message_is_one_line_and_bounded() -> None:
    long = "error: accumulating resources:\n\taccumulation err='merging resources'\n" + "x" * 2000
    h = health.assess(kustomization(ready=cond("Ready", "False", "BuildFailed", long)))
    assert "\n" not in h.message
    assert "\t" not in h.message
    assert len(h.message) <= 500
    assert h.message.startswith("Kustomization not ready: BuildFailed: error: accumulating resources: accumulation")


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"kind": "Deployment", "apiVersion": "apps/v1"},
        {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": None, "spec": [], "status": "weird"},
        {"kind": "StatefulSet", "apiVersion": "apps/v1", "status": {"observedGeneration": True, "replicas": "3"}},
        {"kind": "Pod", "apiVersion": "v1", "status": {"phase": 3, "containerStatuses": [None, {"state": []}]}},
        {
            "kind": "Pod",
            "apiVersion": "v1",
            "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": 1}}]},
        },
        {"kind": "Widget", "apiVersion": "x/v1", "status": {"conditions": [None, {"type": 1}, "Ready"]}},
        {"kind": "Widget", "apiVersion": "x/v1", "status": {"conditions": {"type": "Ready"}}},
        {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"deletionTimestamp": T1, "finalizers": [1, None]}},
    ],
)
def test_malformed_objects_get_an_answer_not_an_exception(broken: dict[str, Any]) -> None:
    h = health.assess(copy.deepcopy(broken))
    assert isinstance(h.state, State)
    assert isinstance(h.message, str)
    assert h.message


def test_assess_does_not_modify_its_input() -> None:
    obj = deployment(ready=1, available=1, conditions=ROLLING)
    snapshot = copy.deepcopy(obj)
    health.assess(obj)
    assert obj == snapshot


def test_state_reads_as_its_kstatus_name() -> None:
    assert State("InProgress") is State.IN_PROGRESS
    assert str(State.IN_PROGRESS) == "InProgress"
    assert f"{State.CURRENT}" == "Current"
    assert isinstance(State.FAILED, str)
    assert {s.value for s in State} == {"Current", "InProgress", "Failed", "Terminating", "NotFound"}


def test_health_is_immutable() -> None:
    h = health.assess(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.state = State.CURRENT  # type: ignore[misc]
