"""A GitSync with ``spec.target``, driven in-process against the real API server, with two identities.

The management identity (the controller's own handle) is a ServiceAccount that may only read
and update GitSyncs and write Events in the management namespace; the target identity (what
the client factory hands out for ``spec.target``) is another ServiceAccount that may only
touch ConfigMaps, in the target namespace and in the GitSync's namespace (where the inventory
lives in the target cluster). Both talk to the same kube-apiserver, so where something lands
is proven by who was allowed to write it: any managed object or inventory written with the
controller's own identity would fail with 403, as would a status write or Event sent through
the target.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from controllers import GS, Env, cm

from reconciler.aws.errors import AwsError
from reconciler.gitsync import loop as controller
from reconciler.gitsync.reconcile import Reconciler, SyncState
from reconciler.gitsync.spec import EksTarget, parse
from reconciler.kube import client, discovery
from reconciler.kube.events import EventRecorder
from reconciler.report.metrics import Metrics
from reconciler.sync import inventory

TARGET = {"eks": {"cluster": "prod", "region": "eu-west-1"}}
RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _grant(admin: client.Kube, ns: str, sa_ns: str, sa: str, rules: list[dict[str, Any]]) -> None:
    name = f"{sa_ns}-{sa}"
    admin.request("POST", f"{RBAC}/namespaces/{ns}/roles", body={"metadata": {"name": name}, "rules": rules})
    admin.request(
        "POST",
        f"{RBAC}/namespaces/{ns}/rolebindings",
        body={
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
        },
    )


def _identity(admin: client.Kube, cluster: Any, ns: str, sa: str) -> client.Kube:
    """A handle that authenticates as ServiceAccount ``ns/sa`` (a TokenRequest token)."""
    admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", body={"metadata": {"name": sa}})
    tr = admin.request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    return client.connect_token(
        cluster.server, str(tr["status"]["token"]), ca_file=str(Path(cluster.root) / "pki" / "ca.crt")
    )


class Setup:
    """The management namespace (GitSyncs, status, Events), the target namespace (the objects),
    and the two identities; ``controller()`` builds an in-process controller as `reconciler run`
    would, with a client factory that hands out the target identity for ``prod``."""

    def __init__(self, env: Env, cluster: Any, mgmt: str, target_ns: str, tmp: Path) -> None:
        self.env, self.admin, self.mgmt, self.target_ns, self.tmp = env, env.kube, mgmt, target_ns, tmp
        self.manager = _identity(self.admin, cluster, mgmt, "controller")
        _grant(
            self.admin,
            mgmt,
            mgmt,
            "controller",
            [
                {
                    "apiGroups": ["gitops.reconciler.dev"],
                    "resources": ["gitsyncs"],
                    "verbs": ["get", "list", "watch", "patch", "update"],
                },
                {"apiGroups": ["gitops.reconciler.dev"], "resources": ["gitsyncs/status"], "verbs": ["get", "patch"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "get"]},
            ],
        )
        self.agent = _identity(self.admin, cluster, target_ns, "agent")
        cms = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
        _grant(self.admin, target_ns, target_ns, "agent", cms)
        _grant(self.admin, mgmt, target_ns, "agent", cms)  # the inventory, in the GitSync's namespace
        self.made: list[EksTarget | None] = []

    def factory(self, target: EksTarget | None, headers: dict[str, str]) -> client.Kube:
        """The target identity for the EKS cluster ``prod``; no other cluster exists."""
        self.made.append(target)
        if target is None or target.cluster != "prod":
            raise AwsError(f"eks:DescribeCluster {target and target.cluster}: ResourceNotFoundException")
        return self.agent

    def controller(self, factory: controller.ClientFactory | None = None) -> controller.Controller:
        opts = controller.ControllerOptions(
            namespace=self.mgmt,
            cache_dir=self.tmp / "cache",
            metrics_addr="",
            health_addr="",
            identity="test",
            allow_eks_targets=("prod/eu-west-1",),
        )
        return controller.Controller(self.manager, opts, metrics=Metrics(), client_factory=factory or self.factory)

    def step(self, ctl: controller.Controller, name: str) -> float | None:
        """One turn of the worker for GitSync ``name``, on its current state (as the watch delivers it)."""
        key = (self.mgmt, name)
        obj = self.env.get(self.mgmt, name)
        assert obj is not None, f"GitSync {name} is gone"
        ctl.objects[key] = obj
        return ctl.work(key)

    def synced(self, ctl: controller.Controller, name: str) -> dict[str, Any]:
        """Add the finalizer, reconcile, and return the GitSync, which must be Ready."""
        if controller.FINALIZER not in (self.env.get(self.mgmt, name) or {})["metadata"].get("finalizers", []):
            assert self.step(ctl, name) is None
        assert self.step(ctl, name) is not None
        obj = self.env.ready(self.mgmt, name)
        assert obj is not None, (self.env.get(self.mgmt, name) or {}).get("status")
        return obj

    def deleted(self, ctl: controller.Controller, name: str) -> float | None:
        """Delete the GitSync and run the finalizer once; returns the worker's next delay."""
        self.admin.request("DELETE", f"{GS}/namespaces/{self.mgmt}/gitsyncs/{name}")
        return self.step(ctl, name)

    def inventory(self, name: str) -> dict[str, Any] | None:
        return self.admin.get_or_none(f"/api/v1/namespaces/{self.mgmt}/configmaps/{inventory.configmap_name(name)}")

    def live(self, name: str) -> dict[str, Any] | None:
        return self.admin.get_or_none(f"/api/v1/namespaces/{self.target_ns}/configmaps/{name}")


@pytest.fixture
def setup(env: Env, cluster: Any, namespace: str, tmp_path: Path) -> Iterator[Setup]:
    target_ns = f"t-{uuid.uuid4().hex[:8]}"
    env.kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": target_ns}})
    s = Setup(env, cluster, namespace, target_ns, tmp_path)
    try:
        yield s
    finally:
        s.manager.close()
        s.agent.close()
        env.kube.request("DELETE", f"/api/v1/namespaces/{target_ns}")


def _forbidden(call: Callable[[], Any]) -> bool:
    try:
        call()
    except client.KubeError as e:
        return e.status == 403
    return False


def test_a_remote_sync_applies_records_and_prunes_in_the_target_and_reports_here(setup: Setup, git_repo: Any) -> None:
    ns, tns = setup.mgmt, setup.target_ns
    # The controller's own identity cannot touch a ConfigMap anywhere; the target's cannot touch a GitSync.
    assert _forbidden(lambda: setup.manager.get(f"/api/v1/namespaces/{tns}/configmaps"))
    assert _forbidden(lambda: setup.manager.get(f"/api/v1/namespaces/{ns}/configmaps"))
    assert _forbidden(lambda: setup.agent.get(f"{GS}/namespaces/{ns}/gitsyncs"))
    assert _forbidden(lambda: setup.agent.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events"))
    git_repo.commit({f"app/{n}.yaml": cm(n, tns, {"v": "1"}) for n in ("a", "b")}, "first")
    uid = setup.env.gitsync(ns, "apps", git_repo.url, path="app", prune=True, target=TARGET)["metadata"]["uid"]
    ctl = setup.controller()

    obj = setup.synced(ctl, "apps")
    assert setup.made == [EksTarget("prod", "eu-west-1")], "one handle, for the target, kept"
    assert {n: (setup.live(n) or {}).get("data") for n in ("a", "b")} == {"a": {"v": "1"}, "b": {"v": "1"}}
    inv = setup.inventory("apps")
    assert inv is not None
    assert inv["metadata"]["annotations"][inventory.OWNER_UID_ANNOTATION] == uid
    ids = [f"{tns}_a__ConfigMap", f"{tns}_b__ConfigMap"]
    assert [e["id"] for e in obj["status"]["inventory"]] == ids
    assert sorted(e["id"] for e in json.loads(inv["data"][inventory.DATA_KEY])["entries"]) == ids
    assert [e["reason"] for e in setup.env.events(ns, "apps")] == ["Synced"]

    git_repo.commit({"app/b.yaml": None}, "drop b")
    assert setup.step(ctl, "apps") is not None
    obj = setup.env.ready(ns, "apps") or {}
    assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{git_repo.head()}"
    assert setup.live("b") is None
    assert setup.live("a") is not None
    assert [e["id"] for e in obj["status"]["inventory"]] == ids[:1]
    assert sorted(e["reason"] for e in setup.env.events(ns, "apps")) == ["Pruned", "Synced", "Synced"]

    assert setup.deleted(ctl, "apps") is None
    assert setup.env.get(ns, "apps") is None
    assert setup.live("a") is None, "prune: true prunes in the target on deletion"
    assert setup.inventory("apps") is None
    assert setup.made == [EksTarget("prod", "eu-west-1")]


@pytest.mark.parametrize("change", [{"prune": False}, {"suspend": True}], ids=["prune-false", "suspended"])
def test_an_orphaning_deletion_deletes_the_inventory_in_the_target(
    setup: Setup, git_repo: Any, change: dict[str, Any]
) -> None:
    """Regression: the orphan path built no target handle and deleted the inventory with the
    controller's own identity in the management cluster (here: a 403 that held the finalizer)."""
    git_repo.commit({"app/a.yaml": cm("a", setup.target_ns, {"v": "1"})}, "first")
    setup.env.gitsync(setup.mgmt, "apps", git_repo.url, path="app", prune=True, target=TARGET)
    ctl = setup.controller()
    setup.synced(ctl, "apps")
    assert setup.inventory("apps") is not None
    setup.admin.request(
        "PATCH", f"{GS}/namespaces/{setup.mgmt}/gitsyncs/apps", body={"spec": change}, content_type=client.MERGE_PATCH
    )

    assert setup.deleted(ctl, "apps") is None
    assert setup.env.get(setup.mgmt, "apps") is None, "the finalizer must be gone"
    assert setup.inventory("apps") is None, "the inventory must be deleted where it lives: in the target"
    assert setup.live("a") is not None, "orphaned, not pruned"


def test_an_orphaning_deletion_does_not_wait_for_an_unreachable_target(
    setup: Setup, git_repo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kept = {f"app/{n}.yaml": cm(n, setup.target_ns, {"v": "1"}) for n in ("k1", "k2")}  # below the prune guards
    git_repo.commit({"app/a.yaml": cm("a", setup.target_ns, {"v": "1"}), **kept}, "first")
    setup.env.gitsync(setup.mgmt, "apps", git_repo.url, path="app", prune=False, target=TARGET)
    setup.synced(setup.controller(), "apps")

    def gone(target: EksTarget | None, headers: dict[str, str]) -> client.Kube:
        raise AwsError("eks:DescribeCluster prod (eu-west-1): ResourceNotFoundException: No cluster found")

    restarted = setup.controller(gone)  # a controller started after the cluster went away
    with caplog.at_level(logging.ERROR, logger="reconciler"):
        assert setup.deleted(restarted, "apps") is None
    assert setup.env.get(setup.mgmt, "apps") is None, "an orphaning deletion must never wait for its target"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"GitSync {setup.mgmt}/apps: deleted, objects orphaned, but its inventory ConfigMap "
        f"{setup.mgmt}/apps.gitsync-inventory stays in EKS cluster prod (eu-west-1): cannot connect to the "
        "target cluster: eks:DescribeCluster prod (eu-west-1): ResourceNotFoundException: No cluster found"
    ]
    stale = setup.inventory("apps")
    assert stale is not None
    assert setup.live("a") is not None

    # The same name again, pruning, and git no longer has a: the stale inventory still lists the
    # orphan, but it is stamped with the old GitSync's uid, so nothing is applied or pruned.
    old_uid = stale["metadata"]["annotations"][inventory.OWNER_UID_ANNOTATION]
    git_repo.commit({"app/a.yaml": None, "app/b.yaml": cm("b", setup.target_ns, {"v": "2"})}, "second")
    new_uid = setup.env.gitsync(setup.mgmt, "apps", git_repo.url, path="app", prune=True, target=TARGET)["metadata"][
        "uid"
    ]
    ctl = setup.controller()
    assert setup.step(ctl, "apps") is None  # the finalizer
    assert setup.step(ctl, "apps") is not None
    ready = next(c for c in (setup.env.get(setup.mgmt, "apps") or {})["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InventoryConflict")
    assert ready["message"].startswith(
        f"GitSync {setup.mgmt}/apps: revision main@sha1:{git_repo.head()}: the inventory ConfigMap "
        f"{setup.mgmt}/apps.gitsync-inventory belongs to another owner (gitops.reconciler.dev/owner-uid {old_uid}),"
        f" not to this one ({new_uid}): "
    )
    assert ready["message"].endswith("To take those objects over deliberately, delete that ConfigMap")
    assert any(e["note"] == ready["message"] for e in setup.env.events(setup.mgmt, "apps"))
    assert setup.live("a") is not None, "an orphan must never be pruned through a stale inventory"
    assert setup.live("b") is None
    assert setup.inventory("apps") == stale

    # Deleting it (prune: true) prunes nothing and leaves the other owner's inventory alone.
    assert setup.deleted(ctl, "apps") is None
    assert setup.env.get(setup.mgmt, "apps") is None
    assert setup.live("a") is not None
    assert setup.inventory("apps") == stale


def test_a_reconciler_without_clients_refuses_a_target_instead_of_syncing_locally(
    env: Env, git_repo: Any, namespace: str, tmp_path: Path
) -> None:
    """Regression: without ``clients=`` the target was ignored and the sync went to the local cluster."""
    git_repo.commit({"app/a.yaml": cm("a", namespace, {"v": "1"})}, "first")
    obj = env.gitsync(namespace, "apps", git_repo.url, path="app", target=TARGET)
    r = Reconciler(
        env.kube,
        discovery.RestMapper(env.kube),
        metrics=Metrics(),
        events=EventRecorder(env.kube, "test"),
        cache_dir=tmp_path,
    )

    out = r.reconcile(obj, parse(obj), state=SyncState(), ready_of=lambda *_: True, handled_request=None)

    assert not out.ok
    ready = next(c for c in (env.get(namespace, "apps") or {})["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetFailed")
    assert ready["message"] == (
        f"GitSync {namespace}/apps: cannot connect to the target cluster: spec.target: this controller was "
        "started without support for remote clusters (EKS cluster prod (eu-west-1))"
    )
    assert env.kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/a") is None
    assert env.kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/apps.gitsync-inventory") is None
