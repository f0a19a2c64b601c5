"""Tenant isolation, attacked as a tenant would, on the real control plane (issue 11).

The controller under test is `reconciler run` authenticating as ServiceAccount
reconciler-system/reconciler with a TokenRequest token, bound by deploy/rbac.yaml and nothing
else (never the admin's client certificate: ``O=system:masters`` bypasses RBAC). Every test
therefore proves two things at once: deploy/'s roles are sufficient (the legitimate part of
the test syncs) and least-privilege (the attack fails for lack of a right, not of a bug).

The tenant owns a namespace, may create GitSyncs there and writes its repository; it has no
other rights. Each attack is one test; docs/security.md lists them.
"""

from __future__ import annotations

import base64
import copy
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controllers import GS, ROOT, Env, cm

from reconciler.kube import client, discovery, ssa
from reconciler.sync import inventory

# Each test here is an attack; tests/reliability.py records its outcome for docs/reliability.md.
pytestmark = pytest.mark.attack(area="security")

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SYSTEM_NS = "reconciler-system"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gitsyncs.gitops.reconciler.dev"
# deploy/deployment.yaml's lock-down flags (test_deploy_manifests checks they are these).
LOCKDOWN = (
    "--default-service-account",
    "gitsync",
    "--platform-service-account",
    f"{SYSTEM_NS}/reconciler-apply",
    "--no-cross-namespace-refs",
    "--min-policy-mode",
    "enforce",
)
TENANT_CMS = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch", "update", "delete"]}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def controller_kubeconfig(crd: None, kube: client.Kube, cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/'s Namespace, ServiceAccounts and RBAC, and a kubeconfig holding a token of the
    controller's ServiceAccount reconciler-system/reconciler (left installed: test_deploy
    installs the same objects and treats existing ones as its own to keep)."""
    mapper = discovery.RestMapper(kube)
    for name in ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml"):
        for doc in yaml.safe_load_all((ROOT / "deploy" / name).read_text()):
            if doc:
                ssa.apply(kube, doc, mapper=mapper, field_manager="test-setup")
    tr = kube.request(
        "POST",
        f"/api/v1/namespaces/{SYSTEM_NS}/serviceaccounts/reconciler/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}},
    )
    path = tmp_path_factory.mktemp("controller-identity") / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {
                            "server": cluster.server,
                            "certificate-authority": str(cluster.root / "pki/ca.crt"),
                        },
                    }
                ],
                "users": [{"name": "reconciler", "user": {"token": tr["status"]["token"]}}],
                "contexts": [{"name": "reconciler", "context": {"cluster": "local", "user": "reconciler"}}],
                "current-context": "reconciler",
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def victim(kube: client.Kube) -> Iterator[str]:
    """Another tenant's namespace, with a Secret and a ConfigMap worth stealing."""
    ns = f"victim-{uuid.uuid4().hex[:6]}"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    kube.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        body={"metadata": {"name": "admin"}, "data": {"token": _b64("VICTIM-SECRET-VALUE"), "password": _b64("pw")}},
    )
    kube.request("POST", f"/api/v1/namespaces/{ns}/configmaps", body=yaml.safe_load(cm("victim", ns, {"v": "orig"})))
    yield ns
    kube.request("DELETE", f"/api/v1/namespaces/{ns}")


def _tenant_sa(kube: client.Kube, ns: str, sa: str, rules: list[dict[str, Any]]) -> None:
    """A tenant's ServiceAccount with a Role in its own namespace (what docs/security.md shows)."""
    kube.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", body={"metadata": {"name": sa}})
    kube.request("POST", f"{RBAC}/namespaces/{ns}/roles", body={"metadata": {"name": sa}, "rules": rules})
    kube.request(
        "POST",
        f"{RBAC}/namespaces/{ns}/rolebindings",
        body={
            "metadata": {"name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
    )


def _ready(env: Env, ns: str, name: str) -> dict[str, Any]:
    obj = env.get(ns, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def _failed(env: Env, ns: str, name: str, *needles: str) -> Any:
    def check() -> dict[str, Any] | None:
        r = _ready(env, ns, name)
        return r if r.get("status") == "False" and all(n in r.get("message", "") for n in needles) else None

    return check


def _stalled(env: Env, ns: str, name: str) -> bool:
    obj = env.get(ns, name) or {}
    return any(
        c["type"] == "Stalled" and c["status"] == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


def _reported(env: Env, ns: str, name: str, ctl: Any) -> str:
    """Everything the controller said about a GitSync: status, Events, its log."""
    return str(env.get(ns, name)) + str(env.events(ns, name)) + ctl.log.read_text()


def _configmap_values(kube: client.Kube, ns: str, *, but: tuple[str, ...] = ()) -> str:
    """The data of every ConfigMap in ``ns`` (as the admin reads it), except those named ``but``."""
    items = kube.get(f"/api/v1/namespaces/{ns}/configmaps")["items"]
    return str([c.get("data") for c in items if c["metadata"]["name"] not in but])


# --- the default identity ------------------------------------------------------------------


def test_a_gitsync_without_service_account_cannot_escalate(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, victim: str, eventually: Any
) -> None:
    """Attack: creating a GitSync without serviceAccountName used to apply with the controller's
    own identity (cluster-admin). Now it acts as ServiceAccount ``gitsync`` of its namespace."""
    ns, k = namespace, env.kube
    _tenant_sa(k, ns, "gitsync", [TENANT_CMS])
    evil_ns = f"evil-{uuid.uuid4().hex[:6]}"
    crb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{ns}-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "gitsync", "namespace": ns}],
    }
    git_repo.commit(
        {
            "app/own.yaml": cm("own", ns, {"k": "v"}),
            "app/crb.yaml": yaml.safe_dump(crb),
            "app/ns.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": evil_ns}}),
            "app/victim.yaml": cm("victim", victim, {"v": "pwned"}),
        }
    )
    ctl = env.start(*LOCKDOWN, kubeconfig=controller_kubeconfig)
    env.gitsync(ns, "escalate", git_repo.url, path="app")
    ready = eventually(_failed(env, ns, "escalate", "forbidden"), 60, "the escalation to be refused")
    assert f"system:serviceaccount:{ns}:gitsync" in ready["message"], ready
    assert k.get_or_none(f"{RBAC}/clusterrolebindings/{ns}-admin") is None
    assert k.get_or_none(f"/api/v1/namespaces/{evil_ns}") is None
    assert k.get(f"/api/v1/namespaces/{victim}/configmaps/victim")["data"] == {"v": "orig"}

    # What its ServiceAccount may do works, inventory included; deletion prunes as that identity.
    git_repo.commit({"app/crb.yaml": None, "app/ns.yaml": None, "app/victim.yaml": None}, "only what it may")
    eventually(lambda: env.ready(ns, "escalate"), 60, "the tenant's own ConfigMap to sync")
    assert k.get(f"/api/v1/namespaces/{ns}/configmaps/own")["data"] == {"k": "v"}
    assert k.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/{inventory.configmap_name('escalate')}") is not None
    k.request("DELETE", f"{GS}/namespaces/{ns}/gitsyncs/escalate")
    eventually(lambda: env.get(ns, "escalate") is None, 60, "the GitSync to be finalized")
    assert k.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/own") is None, "pruned on deletion"
    assert k.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/{inventory.configmap_name('escalate')}") is None
    assert f"{ns}-admin" not in ctl.log.read_text() or "forbidden" in ctl.log.read_text()


def test_a_platform_gitsync_applies_cluster_objects_through_the_platform_account_and_drift_is_watched(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, eventually: Any
) -> None:
    """The other half of the split: a GitSync in a platform namespace without serviceAccountName
    acts as reconciler-system/reconciler-apply (the broad role), and the drift watch, which the
    narrow controller identity could not hold, runs as that account too."""
    ns, k = namespace, env.kube
    made = f"platform-{uuid.uuid4().hex[:6]}"
    git_repo.commit(
        {
            "ns.yaml": yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": made}}),
            "cm.yaml": cm("platform", ns, {"k": "v"}),
        }
    )
    env.start(*LOCKDOWN, "--platform-namespace", ns, kubeconfig=controller_kubeconfig)
    env.gitsync(ns, "addons", git_repo.url, interval="1h")
    try:
        eventually(lambda: env.ready(ns, "addons"), 60, "the platform GitSync to apply a Namespace")
        assert k.get_or_none(f"/api/v1/namespaces/{made}") is not None
        managers = {
            f["manager"] for f in k.get(f"/api/v1/namespaces/{ns}/configmaps/platform")["metadata"]["managedFields"]
        }
        assert managers == {"gitops-reconciler"}
        k.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/configmaps/platform",
            query=[("fieldManager", "kubectl-edit")],
            body={"data": {"k": "edited"}},
            content_type="application/merge-patch+json",
        )
        eventually(
            lambda: k.get(f"/api/v1/namespaces/{ns}/configmaps/platform")["data"] == {"k": "v"},
            30,
            "the drift watch to see the edit and correct it",
        )
        assert any(e["reason"] == "DriftDetected" for e in env.events(ns, "addons"))
    finally:
        k.request("DELETE", f"{GS}/namespaces/{ns}/gitsyncs/addons")
        eventually(lambda: env.get(ns, "addons") is None, 60, "the platform GitSync to prune and go")
    assert (k.get_or_none(f"/api/v1/namespaces/{made}") or {}).get("status", {}).get("phase") in (None, "Terminating")


# --- a tenant's own ServiceAccount ----------------------------------------------------------


@pytest.fixture
def deployer(env: Env, namespace: str) -> str:
    """A tenant ServiceAccount that may manage ConfigMaps it names, read the Secret ``vars``,
    and nothing else: not the Secret ``db-admin`` nor the ConfigMap ``private`` of its own
    namespace, not list ConfigMaps (which would read them all)."""
    ns, k = namespace, env.kube
    _tenant_sa(
        k,
        ns,
        "deployer",
        [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["get", "patch", "update", "delete"],
                "resourceNames": ["app-config", inventory.configmap_name("app")],
            },
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["vars"]},
        ],
    )
    for name, data in (("vars", {"greeting": "hello-allowed"}), ("db-admin", {"password": "TOPSECRET-db-admin"})):
        k.request(
            "POST",
            f"/api/v1/namespaces/{ns}/secrets",
            body={"metadata": {"name": name}, "data": {key: _b64(v) for key, v in data.items()}},
        )
    k.request(
        "POST", f"/api/v1/namespaces/{ns}/configmaps", body=yaml.safe_load(cm("private", ns, {"t": "PRIVATE-cm"}))
    )
    return "deployer"


def _patch_spec(env: Env, ns: str, name: str, spec: dict[str, Any]) -> None:
    env.kube.request(
        "PATCH", f"{GS}/namespaces/{ns}/gitsyncs/{name}", body={"spec": spec}, content_type=client.MERGE_PATCH
    )


def test_a_tenant_cannot_read_what_its_service_account_may_not_read_in_its_own_namespace(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, deployer: str, eventually: Any
) -> None:
    """Attack: substituteFrom and secretRef used to be read with the controller's identity, so a
    tenant could read any Secret or ConfigMap of its namespace into a ConfigMap it can read (or
    send it to its git host), whatever its own ServiceAccount may read."""
    ns, k = namespace, env.kube
    git_repo.commit({"app/cm.yaml": cm("app-config", ns, {"greeting": "${greeting}"})})
    ctl = env.start(*LOCKDOWN, kubeconfig=controller_kubeconfig)
    env.gitsync(
        ns,
        "app",
        git_repo.url,
        path="app",
        serviceAccountName=deployer,
        substituteFrom=[{"kind": "Secret", "name": "vars"}],
    )
    eventually(lambda: env.ready(ns, "app"), 60, "the sync with the Secret its ServiceAccount may read")
    assert k.get(f"/api/v1/namespaces/{ns}/configmaps/app-config")["data"] == {"greeting": "hello-allowed"}

    attacks = [
        ("substituteFrom Secret", {"substituteFrom": [{"kind": "Secret", "name": "db-admin"}]}, "db-admin"),
        ("substituteFrom ConfigMap", {"substituteFrom": [{"kind": "ConfigMap", "name": "private"}]}, "private"),
        (
            "git secretRef",
            {
                "substituteFrom": None,
                "source": {"git": {"url": env.url(git_repo.url), "secretRef": {"name": "db-admin"}}},
            },
            "db-admin",
        ),
    ]
    for what, spec, name in attacks:
        _patch_spec(env, ns, "app", spec)
        ready = eventually(_failed(env, ns, "app", "forbidden", name), 60, f"the {what} read to be refused")
        assert f"system:serviceaccount:{ns}:deployer" in ready["message"], (what, ready)
        assert k.get(f"/api/v1/namespaces/{ns}/configmaps/app-config")["data"] == {"greeting": "hello-allowed"}, what
    for value in ("TOPSECRET-db-admin", "PRIVATE-cm"):
        assert value not in _configmap_values(k, ns, but=("private",))
        assert value not in _reported(env, ns, "app", ctl)


def test_a_tenant_cannot_change_what_its_service_account_may_not(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, deployer: str, victim: str, eventually: Any
) -> None:
    """Its repository may hold anything: only what its ServiceAccount may do happens, and a
    refused revision changes nothing (no partial apply)."""
    ns, k = namespace, env.kube
    git_repo.commit({"app/cm.yaml": cm("app-config", ns, {"v": "1"})})
    env.start(*LOCKDOWN, kubeconfig=controller_kubeconfig)
    env.gitsync(ns, "app", git_repo.url, path="app", serviceAccountName=deployer)
    eventually(lambda: env.ready(ns, "app"), 60, "the first sync")
    private_rv = k.get(f"/api/v1/namespaces/{ns}/configmaps/private")["metadata"]["resourceVersion"]
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sneaky", "namespace": ns}}
    git_repo.commit(
        {
            "app/cm.yaml": cm("app-config", ns, {"v": "2"}),
            "app/private.yaml": cm("private", ns, {"t": "overwritten"}),  # in its namespace, not its to change
            "app/victim.yaml": cm("victim", victim, {"v": "pwned"}),
            "app/sa.yaml": yaml.safe_dump(sa),
        },
        "everything its ServiceAccount may not",
    )
    eventually(_failed(env, ns, "app", "forbidden"), 60, "the revision to be refused")
    assert k.get(f"/api/v1/namespaces/{ns}/configmaps/app-config")["data"] == {"v": "1"}, "no partial apply"
    assert k.get(f"/api/v1/namespaces/{ns}/configmaps/private")["metadata"]["resourceVersion"] == private_rv
    assert k.get(f"/api/v1/namespaces/{victim}/configmaps/victim")["data"] == {"v": "orig"}
    assert k.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/sneaky") is None


def test_a_dependency_in_another_namespace_is_refused(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, victim: str, eventually: Any
) -> None:
    """Attack: dependsOn reads another namespace's GitSync readiness (and orders on it)."""
    ns = namespace
    _tenant_sa(env.kube, ns, "gitsync", [TENANT_CMS])
    git_repo.commit({"cm.yaml": cm("x", ns, {"k": "v"})})
    env.start(*LOCKDOWN, kubeconfig=controller_kubeconfig)
    env.gitsync(ns, "dep", git_repo.url, dependsOn=[{"name": "infra", "namespace": victim}])
    ready = eventually(_failed(env, ns, "dep", "cross-namespace"), 60, "the cross-namespace dependsOn to be refused")
    assert ready["reason"] == "AccessDenied"
    assert f"spec.dependsOn[0]: GitSync {victim}/infra is in another namespace" in ready["message"]
    assert _stalled(env, ns, "dep")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/x") is None


# --- traversal through names, with the CRD's validation off ---------------------------------


@pytest.fixture
def lax_crd(crd: None, kube: client.Kube) -> Iterator[None]:
    """The GitSync CRD with no schema at all (x-kubernetes-preserve-unknown-fields), as an old
    or hand-installed CRD might be: the controller must not rely on admission."""
    original = kube.get(CRD)
    lax = copy.deepcopy(original)
    for version in lax["spec"]["versions"]:
        version["schema"] = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    kube.request("PUT", CRD, body=lax)
    try:
        yield
    finally:
        for _ in range(5):
            cur = kube.get(CRD)
            original["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            try:
                kube.request("PUT", CRD, body=original)
                break
            except client.KubeError as e:
                if not e.conflict:
                    raise


TRAVERSALS = {
    "secret": {"substituteFrom": [{"kind": "Secret", "name": "x/../../../{victim}/secrets/admin"}]},
    "configmap": {"substituteFrom": [{"kind": "ConfigMap", "name": "x/../../../{victim}/configmaps/victim"}]},
    "secretref": {"secretRef": {"name": "x/../../../{victim}/secrets/admin"}},
}


def _traversal(kind: str, victim: str, url: str) -> dict[str, Any]:
    spec = yaml.safe_load(yaml.safe_dump(TRAVERSALS[kind]).replace("{victim}", victim))
    if kind == "secretref":
        return {"source": {"git": {"url": url, "ref": {"branch": "main"}, **spec}}}
    return spec


def test_the_crd_refuses_names_that_climb_out_of_their_namespace(
    env: Env, git_repo: Any, namespace: str, victim: str
) -> None:
    for kind in TRAVERSALS:
        with pytest.raises(client.KubeError) as err:
            env.gitsync(namespace, f"t-{kind}", git_repo.url, **_traversal(kind, victim, env.url(git_repo.url)))
        assert err.value.status == 422, (kind, err.value)


def test_traversal_through_names_is_refused_by_the_controller_when_the_crd_is_lax(
    env: Env,
    controller_kubeconfig: Path,
    git_repo: Any,
    namespace: str,
    victim: str,
    lax_crd: None,
    eventually: Any,
) -> None:
    """Attack: ``x/../../../<ns>/secrets/admin`` in substituteFrom or secretRef read any Secret
    or ConfigMap in the cluster with the controller's identity (urllib3 normalises ``..``)."""
    ns, k = namespace, env.kube
    _tenant_sa(k, ns, "gitsync", [TENANT_CMS])
    git_repo.commit({"app/cm.yaml": cm("leak", ns, {"v": "${token}"})})
    url = env.url(git_repo.url)
    before = len(env.git_http.requests) if env.git_http else 0
    ctl = env.start(*LOCKDOWN, kubeconfig=controller_kubeconfig)
    for kind in TRAVERSALS:
        name = f"t-{kind}"
        for _ in range(50):  # the API server takes a moment to serve the lax schema
            try:
                env.gitsync(ns, name, url, path="app", **_traversal(kind, victim, url))
                break
            except client.KubeError as e:
                if e.status != 422:
                    raise
                time.sleep(0.2)
        ready = eventually(_failed(env, ns, name, "not a valid object name"), 60, f"{kind}: InvalidSpec")
        assert ready["reason"] == "InvalidSpec", ready
        assert _stalled(env, ns, name)
    assert "VICTIM-SECRET-VALUE" not in _configmap_values(k, ns)
    assert k.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/leak") is None
    for kind in TRAVERSALS:
        assert "VICTIM-SECRET-VALUE" not in _reported(env, ns, f"t-{kind}", ctl)
    assert env.git_http is not None
    fetched = [r for r in env.git_http.requests[before:] if url.split("/", 3)[3] in r]
    assert not fetched, "nothing may be fetched for a GitSync whose names are invalid"


# --- sources that borrow the controller's reach --------------------------------------------


class _Listener:
    """A TCP listener on 127.0.0.1 that counts connections: proof that nothing was sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_an_s3_endpoint_not_allowed_for_the_namespace_gets_no_request(
    env: Env, controller_kubeconfig: Path, namespace: str, eventually: Any
) -> None:
    """Attack: spec.source.bucket.endpoint pointed the controller's signed S3 requests at any
    address it can reach (the metadata service, the API server, internal services)."""
    ns, k = namespace, env.kube
    _tenant_sa(k, ns, "gitsync", [TENANT_CMS, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    k.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        body={"metadata": {"name": "keys"}, "data": {"accesskey": _b64("AKIDEXAMPLE"), "secretkey": _b64("s" * 20)}},
    )
    listener = _Listener()
    try:
        endpoint = f"http://127.0.0.1:{listener.port}"
        # allowed for another namespace only; and a bucket without secretRef allowed nowhere
        env.start(*LOCKDOWN, "--allow-bucket-endpoint", f"other-{ns}={endpoint}", kubeconfig=controller_kubeconfig)
        bucket = {"bucket": "metadata", "region": "eu-west-1", "endpoint": endpoint}
        env.gitsync(ns, "ssrf", "", source={"bucket": {**bucket, "secretRef": {"name": "keys"}}})
        env.gitsync(ns, "borrow", "", source={"bucket": {"bucket": "platform-state", "region": "eu-west-1"}})
        ready = eventually(_failed(env, ns, "ssrf", "spec.source.bucket.endpoint"), 60, "the endpoint refused")
        assert ready["reason"] == "AccessDenied"
        assert f"is not allowed for namespace {ns}" in ready["message"]
        assert _stalled(env, ns, "ssrf")
        ready = eventually(_failed(env, ns, "borrow", "controller's own AWS identity"), 60, "the bucket refused")
        assert ready["reason"] == "AccessDenied"
        time.sleep(2)  # a retry, were there one, would have come by now
        assert listener.connections == 0, "no request may reach a refused endpoint"
    finally:
        listener.close()


def test_a_file_url_cannot_read_another_tenants_git_cache(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, victim: str, eventually: Any
) -> None:
    """Attack: a file:// URL read any path of the controller's disk, e.g. another tenant's git
    cache at its predictable path (<cache>/sources/<source key>/git/<key>; it was
    <cache>/<namespace>/<name>/git/<key> before fetches were shared)."""
    k = env.kube
    for ns in (namespace, victim):
        _tenant_sa(k, ns, "gitsync", [TENANT_CMS])
    # no namespace: whoever syncs it gets it in their own namespace
    stolen = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "secret-app"}, "data": {"v": "victim's"}}
    git_repo.commit({"secret-app/cm.yaml": yaml.safe_dump(stolen)})
    env.start(*LOCKDOWN, kubeconfig=controller_kubeconfig)
    env.gitsync(victim, "app", git_repo.url, path="secret-app")
    eventually(lambda: env.ready(victim, "app"), 60, "the victim's sync")
    caches = list((env.tmp / "cache" / "sources").glob("*/git/*"))
    assert caches, "the victim's sync left a git cache to aim at"
    env.gitsync(namespace, "steal", caches[0].as_uri(), raw_url=True, path="secret-app")
    ready = eventually(_failed(env, namespace, "steal", "file:// URLs"), 60, "the file:// URL refused")
    assert ready["reason"] == "AccessDenied"
    assert _stalled(env, namespace, "steal")
    assert k.get_or_none(f"/api/v1/namespaces/{victim}/configmaps/secret-app") is not None
    assert k.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/secret-app") is None


def test_a_tenant_cannot_switch_the_policy_gate_off(
    env: Env, controller_kubeconfig: Path, git_repo: Any, namespace: str, eventually: Any
) -> None:
    """Attack: ``spec.policy.mode: off`` skipped every policy. --min-policy-mode raises it."""
    ns, k = namespace, env.kube
    deploys = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "create", "patch"]}
    _tenant_sa(k, ns, "gitsync", [TENANT_CMS, deploys])
    web = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.k8s.io/pause:latest"}]},
            },
        },
    }
    git_repo.commit({"web.yaml": yaml.safe_dump(web)})
    ctl = env.start(*LOCKDOWN, "--policies", str(ROOT / "policies"), kubeconfig=controller_kubeconfig)
    env.gitsync(ns, "gated", git_repo.url, policy={"mode": "off"})
    ready = eventually(_failed(env, ns, "gated", "denied by policy"), 60, "the policy gate to hold")
    assert ready["reason"] == "PolicyViolation"
    assert ready["message"].endswith("(spec.policy.mode off raised to enforce by --min-policy-mode)"), ready
    assert k.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/web") is None
    assert any(line.get("reason") == "PolicyModeRaised" for line in ctl.lines())
