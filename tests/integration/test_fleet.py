"""examples/fleet/clusters/dev, the whole addon stack, synced into the real control plane.

One sync of the combined overlay (crds + addons + apps) with prune and wait: every object is
live, every CRD Established, every custom resource accepted by the CRDs' schemas, and the
health wait is met by everything the local control plane can satisfy. A second sync with
nothing changed writes nothing (every resourceVersion stays).

What the local control plane cannot satisfy, asserted precisely rather than skipped:
- APIService v1beta1.metrics.k8s.io stays Available=False: the API server cannot reach a
  kwok pod (they are simulated), so metrics-server never answers its discovery check.
- The PodDisruptionBudgets of Prometheus and Alertmanager never see a healthy pod: their pods
  would be made by prometheus-operator, which on kwok only pretends to run.
- Without kwok (--no-kwok) there is no node: Deployments and DaemonSets never become available.

Everything the test creates is pruned at the end, cluster-scoped objects included (CRDs,
ClusterRoles, the APIService, Namespaces), so other tests sharing the control plane never see
it; its names (monitoring.coreos.com, namespaces monitoring/echo/kubernetes-dashboard) are
used by no other test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipelines import run_sync

from reconciler.gitsync.results import SyncOptions
from reconciler.kube import client, discovery
from reconciler.render import RenderOptions, render
from reconciler.sync import health, prune
from reconciler.sync.changeset import Action
from reconciler.sync.objects import OWNER_LABEL, ObjectId

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleet"
NAME = "fleet-dev"
UNSATISFIABLE = {
    ("APIService", "v1beta1.metrics.k8s.io"): "APIService not available",
    # Prometheus and Alertmanager pods are made by prometheus-operator, which on kwok only
    # pretends to run: their PDBs (status from the disruption controller) never see a healthy pod.
    ("PodDisruptionBudget", "prometheus-k8s"): "PodDisruptionBudget: 0 of 1 required pods healthy",
    ("PodDisruptionBudget", "alertmanager-main"): "PodDisruptionBudget: 0 of 1 required pods healthy",
}


def cluster_vars(env: str) -> dict[str, str]:
    cm = yaml.safe_load((FLEET / "gitsyncs" / env / "cluster-vars.yaml").read_text())
    return {k: str(v) for k, v in cm["data"].items()}


def desired() -> list[Any]:
    return render(ROOT, "examples/fleet/clusters/dev", RenderOptions(substitute=cluster_vars("dev")))


def live(kube: client.Kube, mapper: discovery.RestMapper, obj: dict[str, Any]) -> dict[str, Any] | None:
    res = mapper.find(obj["apiVersion"], obj["kind"])
    md = obj["metadata"]
    return kube.get_or_none(res.object_path(md["name"], md.get("namespace") if res.namespaced else None))


def unsatisfiable(oid: ObjectId, h: health.Health, kwok: bool) -> bool:
    if not kwok and oid.kind in ("Deployment", "DaemonSet"):
        return True  # --no-kwok: no node, so no pod ever runs
    for (kind, name), message in UNSATISFIABLE.items():
        if oid.kind == kind and name in (None, oid.name) and h.message.startswith(message):
            return True
    return False


@pytest.fixture
def fleet(kube: client.Kube, mapper: discovery.RestMapper, namespace: str) -> Iterator[SyncOptions]:
    """Sync options for the test; afterwards everything the sync made is pruned."""
    opts = SyncOptions(name=NAME, namespace=namespace, prune=True, wait=True, timeout=60)
    yield opts
    cleanup = SyncOptions(
        name=NAME, namespace=namespace, prune=True, guard=prune.Guard(allow_mass_prune=True), timeout=60
    )
    res = run_sync(kube, mapper, manifests=[], revision="cleanup", options=cleanup)
    assert res.ok, res.errors
    # Objects being deleted count as gone (Namespaces finalize asynchronously).
    left = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in (m.obj for m in desired())
        if o["kind"] in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "APIService", "Namespace")
        and (cur := live(kube, mapper, o)) is not None
        and not cur["metadata"].get("deletionTimestamp")
    ]
    assert not left, f"cluster-scoped objects left behind: {left}"


def test_dev_cluster_syncs_whole_and_a_resync_writes_nothing(
    kube: client.Kube, mapper: discovery.RestMapper, fleet: SyncOptions
) -> None:
    manifests = desired()
    objs = [m.obj for m in manifests]
    assert len(objs) > 100

    kwok = kube.get_or_none("/api/v1/nodes/kwok-node-0") is not None  # False with --no-kwok
    res = run_sync(kube, mapper, manifests=manifests, revision="dev@1", options=fleet)
    assert res.stage in ("health", "done"), res.errors
    assert res.applied is not None
    assert res.applied.ok, res.applied.errors

    # Health: everything the control plane can satisfy is Current; the rest is exactly the
    # known list, for the known reason.
    assert {ObjectId.of(o) for o in objs} == set(res.health)
    not_current = {oid: h for oid, h in res.health.items() if h.state != health.State.CURRENT}
    unexpected = {
        f"{oid.kind}/{oid.namespace}/{oid.name}": f"{h.state}: {h.message}"
        for oid, h in not_current.items()
        if not unsatisfiable(oid, h, kwok)
    }
    assert not unexpected, unexpected
    assert ObjectId("apiregistration.k8s.io", "APIService", "", "v1beta1.metrics.k8s.io") in not_current
    # ...and the errors the sync reports are only about those objects.
    allowed = ["APIService/v1beta1.metrics.k8s.io", "PodDisruptionBudget/", "stopped at health"]
    allowed += [] if kwok else ["Deployment/", "DaemonSet/"]
    for err in res.errors:
        assert any(a in err for a in allowed), err

    # Every object is live, labelled as ours; workloads ran on kwok's node.
    owner = fleet.owner
    for o in objs:
        cur = live(kube, mapper, o)
        assert cur is not None, f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']} not live"
        assert cur["metadata"]["labels"][OWNER_LABEL] == owner
        if o["kind"] == "CustomResourceDefinition":
            conds = {c["type"]: c["status"] for c in cur["status"]["conditions"]}
            assert conds.get("Established") == "True", o["metadata"]["name"]
            assert conds.get("NamesAccepted") == "True", o["metadata"]["name"]
        if o["kind"] == "DaemonSet" and kwok:
            status = cur["status"]
            assert status["numberAvailable"] == status["desiredNumberScheduled"] == 1, o["metadata"]["name"]
        if o["kind"] == "Deployment" and kwok:
            assert cur["status"].get("availableReplicas") == o["spec"]["replicas"], o["metadata"]["name"]
    kinds = {o["kind"] for o in objs}
    assert {"ServiceMonitor", "PrometheusRule", "Prometheus", "Alertmanager"} <= kinds

    # The custom resources were accepted by real schemas: the API server stored them as sent,
    # and refuses what the schemas forbid.
    prom = live(kube, mapper, next(o for o in objs if o["kind"] == "Prometheus"))
    assert prom is not None
    assert (prom["spec"]["replicas"], prom["spec"]["retention"]) == (1, "3d")
    bad = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "bad", "namespace": "monitoring"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "ten minutes"}]}]},
    }
    with pytest.raises(client.KubeError) as e:
        kube.request(
            "POST",
            "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules",
            query=[("dryRun", "All")],
            body=bad,
        )
    assert "spec.groups[0].rules[0].for" in str(e.value)

    # Re-sync, nothing changed: no write at all, so every resourceVersion stays. (The plan may
    # still confirm an object with a server-side dry run, e.g. a Secret, whose live values it
    # does not read; a dry run writes nothing.)
    before = {ObjectId.of(o): live(kube, mapper, o) for o in objs}
    again = run_sync(
        kube, mapper, manifests=desired(), revision="dev@1", options=SyncOptions(name=NAME, namespace=fleet.namespace)
    )
    assert again.ok, again.errors
    assert again.plan is not None
    assert not again.plan.has_changes, [(i.oid, i.action) for i in again.plan.items if i.action != Action.UNCHANGED]
    if again.applied is not None:
        assert {o.result for o in again.applied.outcomes} <= {"unchanged", "skipped"}
    after = {ObjectId.of(o): live(kube, mapper, o) for o in objs}
    changed = [
        f"{oid.kind}/{oid.namespace}/{oid.name}"
        for oid, cur in after.items()
        if cur is None or cur["metadata"]["resourceVersion"] != (before[oid] or {})["metadata"]["resourceVersion"]
    ]
    assert not changed, f"the no-op sync changed: {changed}"
