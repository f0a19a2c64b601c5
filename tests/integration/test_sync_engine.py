"""The sync engine end to end: git (file:// and ssh://) -> render -> plan -> apply -> prune,
through the real ``reconciler`` CLI, against the real control plane."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pipelines import run_sync

from reconciler import cli
from reconciler.gitsync.results import Progress, SyncOptions, SyncResult
from reconciler.kube import client, discovery
from reconciler.render.manifests import Manifest
from reconciler.sync import inventory
from reconciler.sync.objects import OWNER_LABEL


def cm(name: str, ns: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, **meta}, "data": data}


def dump(*objs: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(objs), sort_keys=False)


@dataclass
class Fleet:
    """A git repository of manifests plus the CLI pointed at it and at the cluster."""

    repo: Any  # the git_repo fixture's object
    url: str
    kubeconfig: str
    kube: client.Kube
    ns: str
    cache: Path
    name: str = field(default_factory=lambda: f"s{uuid.uuid4().hex[:6]}")
    extra: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    ns_for_sync: str = ""  # where the inventory lives; default: the test namespace

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        sha: str = self.repo.commit(files, message)
        return sha

    def invoke(self, command: str, *args: str) -> Result:
        argv = [
            command,
            "--repo",
            self.url,
            "--ref",
            "main",
            "--kubeconfig",
            self.kubeconfig,
            "--name",
            self.name,
            "--namespace",
            self.ns_for_sync or self.ns,
            "--cache-dir",
            str(self.cache),
            *self.extra,
            *args,
        ]
        r = CliRunner().invoke(cli.cli, argv, catch_exceptions=False)
        self.outputs.append(r.output)
        return r

    def sync(self, *args: str) -> Result:
        return self.invoke("sync", *args)

    def diff(self, *args: str) -> Result:
        return self.invoke("diff", *args)

    def get(self, path: str) -> dict[str, Any] | None:
        return self.kube.get_or_none(path)

    def cm(self, name: str) -> dict[str, Any] | None:
        return self.get(f"/api/v1/namespaces/{self.ns}/configmaps/{name}")


@pytest.fixture(params=["file", "ssh"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _ssh_args(server: Any, tmp_path: Path) -> list[str]:
    key, known = tmp_path / "deploy_key", tmp_path / "known_hosts"
    key.write_bytes(server.private_key)
    key.chmod(0o600)
    known.write_bytes(server.known_hosts)
    return ["--ssh-key", str(key), "--known-hosts", str(known)]


@pytest.fixture
def fleet(git_repo: Any, cluster: Any, kube: client.Kube, namespace: str, tmp_path: Path) -> Fleet:
    return Fleet(
        repo=git_repo,
        url=git_repo.url,
        kubeconfig=str(cluster.kubeconfig),
        kube=kube,
        ns=namespace,
        cache=tmp_path / "cache",
    )


@pytest.fixture
def any_fleet(transport: str, request: pytest.FixtureRequest, fleet: Fleet, tmp_path: Path) -> Fleet:
    """The same fleet, reached over file:// or over a real sshd with a deploy key."""
    if transport == "ssh":
        server = request.getfixturevalue("ssh_git_server")
        fleet.url = server.url_for(fleet.repo.path)
        fleet.extra = _ssh_args(server, tmp_path)
    return fleet


def test_commit_sync_resync_prune_revert(any_fleet: Fleet) -> None:
    fleet = any_fleet
    ns = fleet.ns
    fleet.commit({"a.yaml": dump(cm("a", ns, {"k": "1"})), "b.yaml": dump(cm("b", ns, {"k": "2"}))}, "add a and b")
    sha = fleet.commit(
        {"keep.yaml": dump(cm("keep", ns, {"k": "3"}, annotations={"gitops.reconciler.dev/prune": "disabled"}))},
        "add keep",
    )

    # 1. a commit that adds objects is applied, and the revision recorded
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert f"main@sha1:{sha}" in r.output
    for name in ("a", "b", "keep"):
        live = fleet.cm(name)
        assert live is not None, name
        assert live["metadata"]["labels"][OWNER_LABEL] == f"{ns}.{fleet.name}"
    inv = inventory.load(fleet.kube, ns, fleet.name)
    assert inv.revision == f"main@sha1:{sha}"
    assert {o.name for o in inv.entries} == {"a", "b", "keep"}

    # 2. nothing changed: nothing written
    names = ("a", "b", "keep", inventory.configmap_name(fleet.name))
    versions = {n: fleet.cm(n)["metadata"]["resourceVersion"] for n in names}  # type: ignore[index]
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert r.output.count("unchanged") >= 3
    assert "3 unchanged" in r.output
    assert {n: fleet.cm(n)["metadata"]["resourceVersion"] for n in versions} == versions  # type: ignore[index]
    d = fleet.diff()
    assert d.exit_code == 0, d.output

    # 3. deleted files: pruned, except prune: disabled; an object that lost our label is never touched
    fleet.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/b",
        body={"metadata": {"labels": {OWNER_LABEL: None}}},
        content_type="application/merge-patch+json",
    )
    b_version = fleet.cm("b")["metadata"]["resourceVersion"]  # type: ignore[index]
    deleting = fleet.commit({"a.yaml": None, "b.yaml": None, "keep.yaml": None}, "delete all three")
    fleet.commit({"c.yaml": dump(cm("c", ns, {"k": "4"}))}, "add c")
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert fleet.cm("a") is None
    assert fleet.cm("b")["metadata"]["resourceVersion"] == b_version, "b lost our label: never touched"  # type: ignore[index]
    assert fleet.cm("keep") is not None, "prune: disabled must be kept"
    assert "pruned" in r.output

    # 4. git revert of the deleting commit brings a back
    fleet.repo.revert(deleting)
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert fleet.cm("a") is not None
    changed = fleet.commit({"a.yaml": dump(cm("a", ns, {"k": "changed"}))}, "change a")
    assert fleet.sync().exit_code == 0
    assert fleet.cm("a")["data"] == {"k": "changed"}  # type: ignore[index]
    fleet.repo.revert(changed)
    assert fleet.sync().exit_code == 0
    assert fleet.cm("a")["data"] == {"k": "1"}  # type: ignore[index]


def test_drift_of_owned_field_is_found_and_corrected_but_foreign_fields_stay(any_fleet: Fleet) -> None:
    fleet = any_fleet
    ns = fleet.ns
    fleet.commit({"app.yaml": dump(cm("app", ns, {"mode": "git"}))})
    assert fleet.sync().exit_code == 0
    # kubectl edit of a field we own
    fleet.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/app",
        query=[("fieldManager", "kubectl-edit")],
        body={"data": {"mode": "hand-edited"}},
        content_type="application/merge-patch+json",
    )
    # another manager adds its own field
    fleet.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/app",
        query=[("fieldManager", "other-controller"), ("force", "true")],
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"extra": "theirs"}},
        content_type="application/apply-patch+yaml",
    )
    d = fleet.diff()
    assert d.exit_code == 1, d.output
    assert "configure ConfigMap/" in d.output
    assert "data.mode" in d.output
    assert "hand-edited" in d.output
    assert "data.extra" not in d.output
    assert fleet.sync().exit_code == 0
    live = fleet.cm("app")
    assert live is not None
    assert live["data"] == {"mode": "git", "extra": "theirs"}
    assert fleet.diff().exit_code == 0


@pytest.mark.parametrize(
    ("files", "needles"),
    [
        ({"bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops}\n"}, ["bad.yaml", "invalid YAML"]),
        (
            {"crd-less.yaml": dump({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})},
            ["crd-less.yaml", "Widget/w", "example.com/v1"],
        ),
        (
            {"var.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: v}\ndata: {x: '${NOT_DEFINED}'}\n"},
            ["var.yaml", "NOT_DEFINED"],
        ),
        (
            {"dup1.yaml": dump(cm("dup", "NS", {})), "dup2.yaml": dump(cm("dup", "NS", {}))},
            ["dup1.yaml", "dup2.yaml", "dup"],
        ),
    ],
    ids=["invalid-yaml", "unknown-kind", "undefined-variable", "duplicate"],
)
def test_bad_revision_applies_and_prunes_nothing(fleet: Fleet, files: dict[str, str], needles: list[str]) -> None:
    ns = fleet.ns
    fleet.commit({"old.yaml": dump(cm("old", ns, {"k": "v"}))})
    assert fleet.sync().exit_code == 0
    files = {k: v.replace("NS", ns) for k, v in files.items()}
    fleet.commit({"old.yaml": None, "new.yaml": dump(cm("new", ns, {"k": "v"})), **files}, "bad commit")
    subst = ("--substitute", "DEFINED=1")  # substitution is opt-in; on, an undefined variable fails
    r = fleet.sync(*subst)
    assert r.exit_code == 2, r.output
    for n in needles:
        assert n in r.output
    assert "nothing was applied or pruned" in r.output
    assert fleet.cm("old") is not None, "a bad revision must not prune"
    assert fleet.cm("new") is None, "a bad revision must not apply anything"
    assert fleet.diff(*subst).exit_code == 2


def test_crd_and_its_custom_resources_in_one_sync(fleet: Fleet) -> None:
    ns = fleet.ns
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
                        }
                    },
                }
            ],
        },
    }
    widgets = [
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": f"w{i}", "namespace": ns},
            "spec": {"size": i},
        }
        for i in range(3)
    ]
    fleet.commit({"crd.yaml": dump(crd), "widgets.yaml": dump(*widgets)})
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    items = fleet.kube.get(f"/apis/{group}/v1/namespaces/{ns}/widgets")["items"]
    assert sorted(w["spec"]["size"] for w in items) == [0, 1, 2]
    r = fleet.sync()
    assert "4 unchanged" in r.output, r.output
    fleet.kube.request("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}")


def _deployment(ns: str, app: str, force: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"name": "web", "namespace": ns}
    if force:
        md["annotations"] = {"gitops.reconciler.dev/force": "enabled"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": md,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


def test_immutable_field_change_needs_the_force_annotation(fleet: Fleet) -> None:
    ns = fleet.ns
    fleet.commit({"web.yaml": dump(_deployment(ns, "one"))})
    assert fleet.sync().exit_code == 0
    uid = fleet.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["metadata"]["uid"]  # type: ignore[index]
    fleet.commit({"web.yaml": dump(_deployment(ns, "two"))}, "change the selector")
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert "spec.selector" in r.output
    assert "immutable" in r.output
    assert "gitops.reconciler.dev/force: enabled" in r.output
    fleet.commit({"web.yaml": dump(_deployment(ns, "two", force=True))}, "force it")
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert "recreated" in r.output
    live = fleet.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert live is not None
    assert live["metadata"]["uid"] != uid
    assert live["spec"]["selector"]["matchLabels"] == {"app": "two"}


def test_secret_values_never_shown(fleet: Fleet) -> None:
    ns = fleet.ns
    old, new = "old-s3cret-value", "new-s3cret-value"

    def secret(value: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "data": {"password": base64.b64encode(value.encode()).decode()},
            "stringData": {"token": value + "-token"},
        }

    fleet.commit({"s.yaml": dump(secret(old))})
    assert fleet.sync().exit_code == 0
    fleet.commit({"s.yaml": dump(secret(new))}, "rotate")
    d = fleet.diff()
    assert d.exit_code == 1, d.output
    assert "*** (before)" in d.output
    assert "*** (after)" in d.output
    j = fleet.diff("-o", "json")
    assert j.exit_code == 1, j.output
    doc = json.loads(j.stdout)
    [change] = doc["changes"]
    assert change["object"] == {"group": "", "kind": "Secret", "namespace": ns, "name": "creds"}
    assert {"op": "replace", "path": "/data/password", "value": "*** (after)"} in change["patch"]
    assert fleet.sync().exit_code == 0
    everything = "\n".join(fleet.outputs)
    for value in (old, new):
        for form in (value, base64.b64encode(value.encode()).decode(), value + "-token"):
            assert form not in everything


def test_deleting_everything_trips_the_mass_prune_guard(fleet: Fleet) -> None:
    ns = fleet.ns
    fleet.commit({"all.yaml": dump(*(cm(f"c{i}", ns, {"i": str(i)}) for i in range(6)))})
    assert fleet.sync().exit_code == 0
    fleet.commit({"all.yaml": None, "README.md": "nothing here"}, "delete everything")
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert "refusing to prune all 6 objects" in r.output
    assert all(fleet.cm(f"c{i}") is not None for i in range(6))
    r = fleet.sync("--allow-mass-prune")
    assert r.exit_code == 0, r.output
    assert all(fleet.cm(f"c{i}") is None for i in range(6))


def test_sync_over_ssh_with_a_deploy_key(
    ssh_git_server: Any, git_repo: Any, cluster: Any, kube: client.Kube, namespace: str, tmp_path: Path
) -> None:
    key = tmp_path / "deploy_key"
    key.write_bytes(ssh_git_server.private_key)
    key.chmod(0o600)
    good, bad = tmp_path / "known_hosts", tmp_path / "wrong_known_hosts"
    good.write_bytes(ssh_git_server.known_hosts)
    bad.write_bytes(ssh_git_server.wrong_known_hosts)
    empty = tmp_path / "empty_known_hosts"
    empty.write_bytes(b"")
    f = Fleet(
        repo=git_repo,
        url=ssh_git_server.url_for(git_repo.path),
        kubeconfig=str(cluster.kubeconfig),
        kube=kube,
        ns=namespace,
        cache=tmp_path / "cache",
        extra=["--ssh-key", str(key), "--known-hosts", str(good)],
    )
    sha = f.commit({"a.yaml": dump(cm("over-ssh", namespace, {"via": "ssh"}))})
    r = f.sync()
    assert r.exit_code == 0, r.output
    assert f"main@sha1:{sha}" in r.output
    assert f.cm("over-ssh") is not None

    for known_hosts, needle in ((bad, "changed"), (empty, "known_hosts")):
        f.extra = ["--ssh-key", str(key), "--known-hosts", str(known_hosts)]
        f.cache = tmp_path / f"cache-{known_hosts.name}"
        r = f.sync()
        assert r.exit_code == 2, r.output
        assert needle.lower() in r.output.lower()
        assert "nothing was applied or pruned" in r.output
    assert json.dumps(f.outputs).count("BEGIN OPENSSH PRIVATE KEY") == 0


def _service(ns: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": ns},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80}]},
    }


def test_drift_in_an_atomic_map_and_replicas_owned_by_another_manager(fleet: Fleet) -> None:
    ns = fleet.ns
    dep = _deployment(ns, "one")
    del dep["spec"]["replicas"]  # an HPA owns replicas
    fleet.commit({"svc.yaml": dump(_service(ns, {"app": "one"})), "dep.yaml": dump(dep)})
    assert fleet.sync().exit_code == 0
    # kubectl edit adds a key to the Service's selector: the whole (atomic) map moves to kubectl-edit
    fleet.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/services/svc",
        query=[("fieldManager", "kubectl-edit")],
        body={"spec": {"selector": {"tier": "canary"}}},
        content_type="application/merge-patch+json",
    )
    # an autoscaler sets replicas
    fleet.kube.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale",
        query=[("fieldManager", "hpa")],
        body={"spec": {"replicas": 4}},
        content_type="application/merge-patch+json",
    )
    d = fleet.diff()
    assert d.exit_code == 1, d.output
    assert "spec.selector.tier" in d.output
    assert "Deployment" not in d.output.split("main@")[0], d.output
    assert fleet.sync().exit_code == 0
    svc = fleet.get(f"/api/v1/namespaces/{ns}/services/svc")
    assert svc is not None
    assert svc["spec"]["selector"] == {"app": "one"}
    assert fleet.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["spec"]["replicas"] == 4  # type: ignore[index]
    assert fleet.diff().exit_code == 0


def test_objects_of_other_syncs_are_never_taken_and_unlabelled_ones_are_adopted(fleet: Fleet) -> None:
    ns = fleet.ns
    for name, labels in (("theirs", {OWNER_LABEL: f"{ns}.someone-else"}), ("stray", {})):
        fleet.kube.request(
            "POST", f"/api/v1/namespaces/{ns}/configmaps", body=cm(name, ns, {"v": "orig"}, labels=labels)
        )
    fleet.kube.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body=_deployment(ns, "one"))
    theirs_rv = fleet.cm("theirs")["metadata"]["resourceVersion"]  # type: ignore[index]
    fleet.commit({"theirs.yaml": dump(cm("theirs", ns, {"v": "mine"}))})
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert f"ConfigMap/{ns}/theirs" in r.output
    assert "already managed by sync" in r.output
    assert fleet.cm("theirs")["metadata"]["resourceVersion"] == theirs_rv  # type: ignore[index]

    # an existing Deployment without any owner label, whose immutable selector git changes:
    # never deleted, even with the force annotation, because it is not ours yet
    uid = fleet.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["metadata"]["uid"]  # type: ignore[index]
    fleet.commit({"theirs.yaml": None, "web.yaml": dump(_deployment(ns, "two", force=True))}, "claim web")
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert "not recreated" in r.output
    assert fleet.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")["metadata"]["uid"] == uid  # type: ignore[index]

    fleet.commit({"web.yaml": None, "stray.yaml": dump(cm("stray", ns, {"v": "git"}))}, "adopt stray")
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert "adopted" in r.output
    stray = fleet.cm("stray")
    assert stray is not None
    assert stray["data"] == {"v": "git"}
    assert stray["metadata"]["labels"][OWNER_LABEL] == f"{ns}.{fleet.name}"


def test_no_prune_keeps_the_inventory_and_reconcile_disabled_is_never_pruned(fleet: Fleet) -> None:
    ns = fleet.ns
    objs = {
        "a.yaml": dump(cm("a", ns, {"k": "1"})),
        "b.yaml": dump(cm("b", ns, {"k": "1"})),
        "c.yaml": dump(cm("c", ns, {"k": "1"}, annotations={"gitops.reconciler.dev/reconcile": "disabled"})),
    }
    fleet.commit(objs)
    assert fleet.sync().exit_code == 0
    fleet.commit({"a.yaml": None, "c.yaml": None}, "drop a and c")
    r = fleet.sync("--no-prune")
    assert r.exit_code == 0, r.output
    assert fleet.cm("a") is not None
    assert {o.name for o in inventory.load(fleet.kube, ns, fleet.name).entries} == {"a", "b", "c"}
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert fleet.cm("a") is None
    assert fleet.cm("c") is not None, "reconcile: disabled objects are neither changed nor pruned"


def test_a_namespace_holding_kept_objects_is_not_pruned(fleet: Fleet) -> None:
    ns = fleet.ns
    other = f"{ns}-app"
    fleet.commit(
        {
            "ns.yaml": dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}}),
            "keep.yaml": dump(cm("keep", other, {"k": "v"}, annotations={"gitops.reconciler.dev/prune": "disabled"})),
            "x.yaml": dump(cm("x", ns, {"k": "v"})),
        }
    )
    assert fleet.sync().exit_code == 0
    fleet.commit({"ns.yaml": None}, "drop the namespace only")
    r = fleet.sync()
    assert r.exit_code == 0, r.output
    assert "still holds 1 kept object" in r.output
    assert fleet.get(f"/api/v1/namespaces/{other}")["status"]["phase"] == "Active"  # type: ignore[index]
    fleet.kube.request("DELETE", f"/api/v1/namespaces/{other}")


def test_object_invalid_on_the_server_in_a_new_namespace_writes_no_namespaced_object(fleet: Fleet) -> None:
    ns = fleet.ns
    fresh = f"{ns}-new"
    fleet.commit({"old.yaml": dump(cm("old", ns, {"k": "v"})), "stay.yaml": dump(cm("stay", ns, {"k": "v"}))})
    assert fleet.sync().exit_code == 0
    bad_svc = _service(fresh, {"app": "x"})
    bad_svc["spec"]["ports"][0]["port"] = 99999
    fleet.commit(
        {
            "old.yaml": None,
            "ns.yaml": dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": fresh}}),
            "cm.yaml": dump(cm("inside", fresh, {"k": "v"})),
            "svc.yaml": dump(bad_svc),
        },
        "new namespace with an invalid service",
    )
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert f"Service/{fresh}/svc" in r.output
    assert "99999" in r.output
    assert fleet.get(f"/api/v1/namespaces/{fresh}/configmaps/inside") is None
    assert fleet.cm("old") is not None, "a failed sync prunes nothing"
    inv = inventory.load(fleet.kube, ns, fleet.name)
    assert {o.name for o in inv.entries} >= {"old", fresh}, "what a failed sync may have written stays recorded"
    fleet.kube.request("DELETE", f"/api/v1/namespaces/{fresh}")


def test_an_inventory_that_cannot_be_stored_means_nothing_is_applied(fleet: Fleet) -> None:
    fleet.commit({"a.yaml": dump(cm("a", fleet.ns, {"k": "v"}))})
    fleet.ns_for_sync = "no-such-namespace"
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert "cannot store the inventory" in r.output
    assert "nothing was applied or pruned" in r.output
    assert fleet.cm("a") is None


def test_ratio_guard(fleet: Fleet) -> None:
    ns = fleet.ns
    fleet.commit({f"c{i}.yaml": dump(cm(f"c{i}", ns, {"i": str(i)})) for i in range(8)})
    assert fleet.sync().exit_code == 0
    fleet.commit({f"c{i}.yaml": None for i in range(5)}, "delete 5 of 8")
    r = fleet.sync()
    assert r.exit_code == 2, r.output
    assert "refusing to prune 5 of 8 objects (62% > 50%)" in r.output
    assert fleet.cm("c0") is not None
    r = fleet.sync("--max-prune-ratio", "0.7")
    assert r.exit_code == 0, r.output
    assert fleet.cm("c0") is None
    assert fleet.cm("c7") is not None


def test_wait_reports_healthy_and_unhealthy_objects(fleet: Fleet, request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--no-kwok"):
        pytest.fail("this test needs kwok (Pods that run); do not use --no-kwok")
    ns = fleet.ns
    fleet.commit({"web.yaml": dump(_deployment(ns, "one"))})
    r = fleet.sync("--wait", "--timeout", "1m")
    assert r.exit_code == 0, r.output
    dep = fleet.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
    assert dep is not None
    assert dep["status"]["availableReplicas"] == 1

    huge = _deployment(ns, "one")
    huge["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1000"}}
    fleet.commit({"web.yaml": dump(huge)}, "ask for more CPU than any node has")
    r = fleet.sync("--wait", "--timeout", "10s")  # a duration, as every Kubernetes tool takes
    assert r.exit_code == 2, r.output
    assert f"Deployment/{ns}/web: InProgress" in r.output
    assert "sync stopped at health" in r.output


def test_policy_gate_in_cli_sync(fleet: Fleet) -> None:
    ns = fleet.ns
    root = Path(__file__).resolve().parents[2]
    dep = _deployment(ns, "one")
    dep["metadata"]["labels"] = {"app.kubernetes.io/name": "web"}
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/pause:latest"
    dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "10m", "memory": "8Mi"},
        "limits": {"cpu": "50m", "memory": "16Mi"},
    }
    fleet.commit({"cm.yaml": dump(cm("fine", ns, {"k": "v"})), "web.yaml": dump(dep)})
    r = fleet.sync("--policies", str(root / "policies"))
    assert r.exit_code == 2, r.output
    assert "Deny by policy image-tags" in r.output
    assert "nothing was applied or pruned" in r.output
    assert fleet.cm("fine") is None
    r = fleet.sync("--policies", str(root / "policies"), "--policy-mode", "audit")
    assert r.exit_code == 0, r.output
    assert "policy warning: Deny by policy image-tags" in r.output
    assert fleet.cm("fine") is not None


def _stamp(fleet: Fleet) -> str | None:
    inv = fleet.cm(inventory.configmap_name(fleet.name))
    assert inv is not None
    return (inv["metadata"].get("annotations") or {}).get(inventory.OWNER_UID_ANNOTATION)


def test_an_inventory_of_another_owner_stops_the_sync_before_anything_is_written(
    fleet: Fleet, mapper: discovery.RestMapper
) -> None:
    """Two controllers whose GitSyncs share ``<namespace>.<name>`` (a hub's GitSync targeting this
    cluster and this cluster's own) share the inventory ConfigMap: the owner uid stamped on it
    keeps each from pruning what the other applied."""
    ns = fleet.ns
    files = {f"{n}.yaml": dump(cm(n, ns, {"k": "1"})) for n in ("a", "b")}
    sha = fleet.commit(files)
    assert fleet.sync().exit_code == 0
    assert _stamp(fleet) is None  # the CLI has no GitSync: it does not stamp

    def run(uid: str, *names: str) -> SyncResult:
        ms = [Manifest(cm(n, ns, {"k": "1"}), f"{n}.yaml", 0) for n in names]
        opts = SyncOptions(fleet.name, ns, owner_uid=uid)
        return run_sync(fleet.kube, mapper, manifests=ms, revision=f"main@sha1:{sha}", options=opts)

    assert run("uid-hub", "a", "b").ok  # unstamped (an older version, the CLI): accepted, and stamped
    assert _stamp(fleet) == "uid-hub"
    fleet.commit({"c.yaml": dump(cm("c", ns, {"k": "1"}))})
    assert fleet.sync().exit_code == 0
    assert _stamp(fleet) == "uid-hub", "the CLI keeps the owner's stamp"

    before = fleet.cm(inventory.configmap_name(fleet.name))
    with pytest.raises(inventory.InventoryOwnerError) as e:
        run("uid-local", "a")  # would prune b and c
    assert str(e.value) == (
        f"the inventory ConfigMap {ns}/{fleet.name}.gitsync-inventory belongs to another owner "
        "(gitops.reconciler.dev/owner-uid uid-hub), not to this one (uid-local): a GitSync of the same namespace"
        " and name on another management cluster, or a deleted one whose orphaned objects it still lists;"
        " nothing was applied or pruned. To take those objects over deliberately, delete that ConfigMap"
    )
    assert fleet.cm("b") is not None
    assert fleet.cm("c") is not None
    assert fleet.cm(inventory.configmap_name(fleet.name)) == before, "not even the write-ahead inventory"


def test_two_syncs_that_read_the_same_inventory_cannot_both_write_it(
    fleet: Fleet, mapper: discovery.RestMapper
) -> None:
    """Every inventory write is conditional on what the sync read: of two syncs that read the
    same state (two controllers stamping a new inventory, or a controller and the CLI), the
    slower one stops at its write-ahead record, before it applies or prunes anything."""
    ns = fleet.ns
    sha = fleet.commit({"a.yaml": dump(cm("a", ns, {"k": "1"}))})

    def run(uid: str, names: list[str], progress: Progress | None = None) -> SyncResult:
        ms = [Manifest(cm(n, ns, {"k": "1"}), f"{n}.yaml", 0) for n in names]
        opts = SyncOptions(fleet.name, ns, owner_uid=uid)
        return run_sync(fleet.kube, mapper, manifests=ms, revision=f"main@sha1:{sha}", options=opts, progress=progress)

    # Both find no inventory; the other one creates it while this one plans.
    res = run("uid-a", ["a"], Progress(planned=lambda p: run("uid-b", ["b"])))
    assert not res.ok
    assert res.errors == [
        f"the inventory ConfigMap {ns}/{fleet.name}.gitsync-inventory changed since this sync read it (another"
        " sync of the same name, from another controller or the CLI, is running?); nothing more was written;"
        " nothing was applied or pruned"
    ]
    assert fleet.cm("a") is None
    assert fleet.cm("b") is not None
    assert _stamp(fleet) == "uid-b"

    # Both read the stored inventory; the other one (here unstamped, as the CLI) rewrites it first.
    res = run("uid-b", ["a", "b"], Progress(planned=lambda p: run("", ["b", "c"])))
    assert not res.ok
    assert "changed since this sync read it" in res.errors[0]
    assert fleet.cm("a") is None
    assert run("uid-b", ["a", "b"]).ok, "the next sync reads the new state and goes ahead"
    assert fleet.cm("a") is not None
    assert fleet.cm("c") is None, "c was recorded by the sync that won, so it is pruned now"


def test_objects_in_a_new_namespace_are_validated_once_before_their_stage(
    fleet: Fleet, mapper: discovery.RestMapper
) -> None:
    """A dry run inside a Namespace that does not exist yet can only answer "namespace not
    found": such objects are deferred without it, then validated together right before their
    stage. Per object: one dry run and one apply, nothing more."""
    new_ns = f"{fleet.ns}-new"
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_ns}}]
    objs += [cm(f"c{i}", new_ns, {"k": str(i)}) for i in range(5)]
    ms = [Manifest(o, "new.yaml", i) for i, o in enumerate(objs)]
    before = dict(fleet.kube.requests)
    try:
        opts = SyncOptions(fleet.name, fleet.ns)
        res = run_sync(fleet.kube, mapper, manifests=ms, revision="main@sha1:" + "0" * 40, options=opts)
        assert res.ok, res.errors
        patches = fleet.kube.requests["PATCH"] - before.get("PATCH", 0)
        # Namespace: dry run + apply; 5 ConfigMaps: dry run + apply each; the final inventory.
        assert patches == 2 + 5 * 2 + 1
        assert fleet.kube.get_or_none(f"/api/v1/namespaces/{new_ns}/configmaps/c4") is not None
    finally:
        fleet.kube.request("DELETE", f"/api/v1/namespaces/{new_ns}")
