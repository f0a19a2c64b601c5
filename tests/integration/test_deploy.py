"""`kubectl apply -k deploy/` on the real control plane: the CRD is Established and validates
GitSyncs (OpenAPI schema and CEL), RBAC grants the controller what it needs and no more,
and the controller's pods pass the "restricted" Pod Security Standard.

The control plane is shared with the other integration tests: everything this module
created is deleted at the end, except the CRD, which stays installed (applying it again is
idempotent, and other tests use it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.gitsync import spec as gitsync_spec
from reconciler.kube import client

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CRD_NAME = "gitsyncs.gitops.reconciler.dev"
CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
SYSTEM_NS = "reconciler-system"
CONTROLLER_SA = f"system:serviceaccount:{SYSTEM_NS}:reconciler"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _kubectl_binary() -> str:
    # The server is 1.35: prefer the closest kubectl there is (1.33), else the default one.
    for candidate in ("/usr/bin/kubectl.1.33", shutil.which("kubectl")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("kubectl not found: it is what users install with (`kubectl apply -k deploy/`)")


def kubectl(cluster: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _path_of(doc: dict[str, Any]) -> str:
    """REST path of one object from deploy/ (only the kinds deploy/ holds)."""
    group, _, version = doc["apiVersion"].rpartition("/")
    plural = {
        "Namespace": "namespaces",
        "CustomResourceDefinition": "customresourcedefinitions",
        "ServiceAccount": "serviceaccounts",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "Role": "roles",
        "RoleBinding": "rolebindings",
        "Service": "services",
        "Deployment": "deployments",
        "NetworkPolicy": "networkpolicies",
    }[doc["kind"]]
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    ns = doc["metadata"].get("namespace")
    return (
        f"{base}/namespaces/{ns}/{plural}/{doc['metadata']['name']}"
        if ns
        else f"{base}/{plural}/{doc['metadata']['name']}"
    )


@pytest.fixture(scope="module")
def core(cluster: Any, kube: client.Kube) -> Iterator[list[dict[str, Any]]]:
    """`kubectl apply -k deploy/`; yields the objects it installs, removes them afterwards."""
    built = kubectl(cluster, "kustomize", str(DEPLOY))
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    existed = {_path_of(d) for d in docs if kube.get_or_none(_path_of(d)) is not None}
    try:
        res = kubectl(cluster, "apply", "-k", str(DEPLOY))
        assert res.returncode == 0, f"kubectl apply -k deploy/ failed:\n{res.stdout}\n{res.stderr}"
        yield docs
    finally:
        _remove(kube, docs, existed)


def _remove(kube: client.Kube, docs: list[dict[str, Any]], existed: set[str]) -> None:
    import time

    created = [d for d in docs if _path_of(d) not in existed and d["kind"] != "CustomResourceDefinition"]
    for d in sorted(created, key=lambda d: d["kind"] == "Namespace"):  # the Namespace last
        try:
            kube.request("DELETE", _path_of(d), query=[("propagationPolicy", "Foreground")])
        except client.KubeError as e:
            if not e.not_found:
                raise
    if any(d["kind"] == "Namespace" for d in created):
        # Wait, so that a later `kubectl apply -k deploy/` does not meet a Terminating namespace.
        deadline = time.monotonic() + 90
        while kube.get_or_none(f"/api/v1/namespaces/{SYSTEM_NS}") is not None and time.monotonic() < deadline:
            time.sleep(0.5)


def _gitsync(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gitops.reconciler.dev/v1",
        "kind": "GitSync",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _create(kube: client.Kube, ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = kube.request(
        "POST", f"/apis/gitops.reconciler.dev/v1/namespaces/{ns}/gitsyncs", body=_gitsync(ns, name, spec)
    )
    return obj


GIT = {"git": {"url": "https://git.example.com/org/fleet.git", "ref": {"branch": "main"}}}


# --- install ------------------------------------------------------------------------------


def test_apply_installs_every_core_object_and_is_idempotent(
    cluster: Any, kube: client.Kube, core: list[dict[str, Any]]
) -> None:
    kinds = sorted({d["kind"] for d in core})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for d in core:
        assert kube.get_or_none(_path_of(d)) is not None, f"{d['kind']} {d['metadata']['name']} was not created"
    again = kubectl(cluster, "apply", "-k", str(DEPLOY))
    assert again.returncode == 0, again.stderr
    changed = [line for line in again.stdout.splitlines() if not line.endswith(" unchanged")]
    assert not changed, f"a second apply changed objects: {changed}"


def test_crd_is_established_with_the_fixed_names(core: list[dict[str, Any]], kube: client.Kube) -> None:
    import time

    deadline = time.monotonic() + 30
    while True:
        crd = kube.get(CRD_PATH)
        conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
        if conds.get("Established") == "True" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert conds.get("Established") == "True", conds
    assert conds.get("NamesAccepted") == "True", conds
    names = crd["status"]["acceptedNames"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("GitSync", "gitsyncs", ["gsync"])
    assert crd["spec"]["scope"] == "Namespaced"
    (v1,) = crd["spec"]["versions"]
    assert (v1["name"], v1["served"], v1["storage"]) == ("v1", True, True)
    assert v1["subresources"] == {"status": {}}
    resources = kube.get("/apis/gitops.reconciler.dev/v1")["resources"]
    assert {r["name"] for r in resources} == {"gitsyncs", "gitsyncs/status"}


# --- schema and CEL -----------------------------------------------------------------------


def test_a_full_gitsync_is_accepted(core: list[dict[str, Any]], kube: client.Kube, namespace: str) -> None:
    spec = {
        "source": {
            "git": {
                "url": "ssh://git@git.example.com/org/fleet.git",
                "ref": {"branch": "main"},
                "secretRef": {"name": "deploy-key"},
            }
        },
        "path": "./clusters/prod",
        "interval": "1m",
        "retryInterval": "30s",
        "timeout": "1h30m",
        "prune": True,
        "wait": True,
        "dependsOn": [{"name": "crds"}, {"name": "infra", "namespace": "platform"}],
        "targetNamespace": "apps",
        "serviceAccountName": "tenant-a",
        "substitute": {"CLUSTER_NAME": "prod"},
        "substituteFrom": [
            {"kind": "ConfigMap", "name": "cluster-vars"},
            {"kind": "Secret", "name": "s", "optional": True},
        ],
        "patches": [
            {
                "patch": '[{"op": "replace", "path": "/spec/replicas", "value": 3}]',
                "target": {"group": "apps", "version": "v1", "kind": "Deployment", "labelSelector": "tier=web"},
            }
        ],
        "policy": {"mode": "audit"},
        "drift": {"mode": "warn"},
        "suspend": False,
    }
    live = _create(kube, namespace, "full", spec)
    for key, value in spec.items():
        if key != "substituteFrom":
            assert live["spec"][key] == value, key
    assert live["spec"]["substituteFrom"][0] == {"kind": "ConfigMap", "name": "cluster-vars", "optional": False}


def test_every_duration_form_is_admitted_and_read_alike(
    core: list[dict[str, Any]], kube: client.Kube, namespace: str
) -> None:
    """The CRD pattern and the controller's parser agree: Go durations and a bare number of seconds."""
    live = _create(
        kube, namespace, "durations", {"source": GIT, "interval": "300", "retryInterval": "1.5m", "timeout": "1h30m"}
    )
    s = gitsync_spec.parse(live)
    assert (s.interval, s.retry_interval, s.timeout) == (300, 90, 5400)


def test_an_empty_substitute_field_is_kept_and_turns_substitution_on(
    core: list[dict[str, Any]], kube: client.Kube, namespace: str
) -> None:
    """Substitution is opt-in by the field's presence (Flux's postBuild): the API server must keep
    `substitute: {}` and `substituteFrom: []`, and the controller read them as "on"."""
    on = _create(kube, namespace, "subst-empty", {"source": GIT, "substitute": {}})
    assert on["spec"]["substitute"] == {}
    assert gitsync_spec.parse(on).substitution
    on_from = _create(kube, namespace, "subst-from-empty", {"source": GIT, "substituteFrom": []})
    assert on_from["spec"]["substituteFrom"] == []
    assert gitsync_spec.parse(on_from).substitution
    off = _create(kube, namespace, "subst-none", {"source": GIT})
    assert "substitute" not in off["spec"]
    assert not gitsync_spec.parse(off).substitution


def test_a_minimal_gitsync_gets_the_defaults(core: list[dict[str, Any]], kube: client.Kube, namespace: str) -> None:
    live = _create(kube, namespace, "minimal", {"source": {"git": {"url": "git@github.com:org/fleet.git"}}})
    spec = live["spec"]
    assert (spec["interval"], spec["retryInterval"], spec["timeout"]) == ("5m", "1m", "5m")
    assert (spec["prune"], spec["wait"], spec["suspend"], spec["path"]) == (True, False, False, ".")
    assert spec["policy"] == {"mode": "enforce"}
    assert spec["drift"] == {"mode": "correct"}


def test_a_bucket_gitsync_is_accepted(core: list[dict[str, Any]], kube: client.Kube, namespace: str) -> None:
    bucket = {
        "bucket": "fleet",
        "prefix": "prod/",
        "region": "eu-west-1",
        "endpoint": "https://s3.eu-west-1.amazonaws.com",
        "secretRef": {"name": "s3"},
    }
    live = _create(kube, namespace, "bucket", {"source": {"bucket": bucket}})
    assert live["spec"]["source"] == {"bucket": bucket}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        pytest.param(
            {"source": {**GIT, "bucket": {"bucket": "fleet"}}},
            "exactly one of source.git or source.bucket",
            id="git-and-bucket",
        ),
        pytest.param({"source": {}}, "exactly one of source.git or source.bucket", id="no-source"),
        pytest.param({}, "spec.source: Required value", id="no-source-field"),
        pytest.param(
            {"source": {"git": {"url": "https://h/x.git", "ref": {"branch": "main", "tag": "v1.0.0"}}}},
            "at most one of ref.branch, ref.tag, ref.semver, ref.commit",
            id="branch-and-tag",
        ),
        pytest.param(
            {"source": {"git": {"url": "https://h/x.git", "ref": {"semver": "^1", "commit": "a" * 40}}}},
            "at most one of ref.branch, ref.tag, ref.semver, ref.commit",
            id="semver-and-commit",
        ),
        pytest.param({"source": GIT, "interval": "5 minutes"}, "spec.interval", id="interval-words"),
        pytest.param({"source": GIT, "interval": "300x"}, "spec.interval", id="interval-bad-unit"),
        pytest.param({"source": GIT, "retryInterval": "1d"}, "spec.retryInterval", id="retry-days"),
        pytest.param({"source": GIT, "timeout": "-5m"}, "spec.timeout", id="timeout-negative"),
        pytest.param({"source": {"git": {"ref": {"branch": "main"}}}}, "spec.source.git.url", id="git-no-url"),
        pytest.param({"source": {"git": {"url": "ext::sh -c x"}}}, "spec.source.git.url", id="git-ext-url"),
        pytest.param(
            {"source": {"git": {"url": "https://h/x.git", "ref": {"commit": "main"}}}},
            "spec.source.git.ref.commit",
            id="commit-not-sha",
        ),
        pytest.param({"source": {"bucket": {"prefix": "p/"}}}, "spec.source.bucket.bucket", id="bucket-no-name"),
        pytest.param({"source": GIT, "policy": {"mode": "block"}}, "spec.policy.mode", id="policy-mode"),
        pytest.param({"source": GIT, "drift": {"mode": "fix"}}, "spec.drift.mode", id="drift-mode"),
        pytest.param({"source": GIT, "prune": "yes"}, "spec.prune", id="prune-not-bool"),
        pytest.param({"source": GIT, "substitute": {"REPLICAS": 3}}, "spec.substitute.REPLICAS", id="substitute-int"),
        pytest.param(
            {"source": GIT, "substituteFrom": [{"kind": "Deployment", "name": "x"}]},
            "spec.substituteFrom[0].kind",
            id="substitute-from-kind",
        ),
        pytest.param(
            {"source": GIT, "dependsOn": [{"namespace": "x"}]}, "spec.dependsOn[0].name", id="depends-no-name"
        ),
        pytest.param(
            {"source": GIT, "patches": [{"target": {"kind": "Deployment"}}]}, "spec.patches[0].patch", id="patch"
        ),
    ],
)
def test_an_invalid_gitsync_is_rejected(
    core: list[dict[str, Any]], kube: client.Kube, namespace: str, spec: dict[str, Any], says: str
) -> None:
    with pytest.raises(client.KubeError) as err:
        _create(kube, namespace, "invalid", spec)
    assert err.value.status == 422, err.value
    assert err.value.reason == "Invalid"
    assert says in err.value.message, err.value.message


# --- status subresource and printer columns -----------------------------------------------


def test_status_subresource_and_printer_columns(
    cluster: Any, core: list[dict[str, Any]], kube: client.Kube, namespace: str
) -> None:
    _create(kube, namespace, "shown", {"source": GIT})
    path = f"/apis/gitops.reconciler.dev/v1/namespaces/{namespace}/gitsyncs/shown"
    revision = "main@sha1:" + "0123456789abcdef" * 2 + "01234567"
    status = {
        "observedGeneration": 1,
        "lastAttemptedRevision": revision,
        "lastAppliedRevision": revision,
        "lastHandledRequestedAt": "2026-01-01T00:00:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": f"Applied revision: {revision}",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            },
            {
                "type": "Drifted",
                "status": "True",
                "reason": "DriftDetected",
                "message": "2 objects differ",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            },
        ],
        "inventory": [{"id": f"{namespace}_web_apps_Deployment", "v": "v1"}],
        "drift": {"objects": 2, "lastDetectedAt": "2026-01-01T00:00:00Z"},
        "lastPlan": {"create": 1, "configure": 0, "unchanged": 4, "prune": 0, "skip": 0},
    }
    # status is ignored on the main resource (that is what the subresource is for) ...
    kube.request("PATCH", path, body={"status": status}, content_type=client.MERGE_PATCH)
    assert "status" not in kube.get(path) or not kube.get(path)["status"].get("conditions")
    # ... and stored through /status
    live = kube.request("PATCH", path + "/status", body={"status": status}, content_type=client.MERGE_PATCH)
    assert live["status"] == status

    table = kube.request("GET", path, accept=TABLE)
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [("Name", 0), ("Ready", 0), ("Revision", 0), ("Drift", 0), ("Age", 0), ("Message", 0)]
    cells = table["rows"][0]["cells"]
    assert cells[0:4] == ["shown", "True", revision, 2]
    assert cells[5] == f"Applied revision: {revision}"

    # what users type: the short name, through kubectl's discovery
    out = kubectl(cluster, "get", "gsync", "-n", namespace)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "REVISION", "DRIFT", "AGE", "MESSAGE"]
    assert row.split()[:4] == ["shown", "True", revision, "2"]

    # the condition shape is metav1.Condition's: a status outside True/False/Unknown is refused
    bad = json.loads(json.dumps(status))
    bad["conditions"][0]["status"] = "Yes"
    with pytest.raises(client.KubeError) as err:
        kube.request("PATCH", path + "/status", body={"status": bad}, content_type=client.MERGE_PATCH)
    assert err.value.status == 422, err.value
    assert "status.conditions[0].status" in err.value.message


# --- RBAC ---------------------------------------------------------------------------------


def _allowed(kube: client.Kube, user: str, groups: list[str], attrs: dict[str, str]) -> bool:
    review = kube.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": groups, "resourceAttributes": attrs},
        },
    )
    return bool(review["status"].get("allowed"))


def _attrs(verb: str, resource: str, group: str = "", namespace: str = "apps", sub: str = "") -> dict[str, str]:
    a = {"verb": verb, "resource": resource, "group": group, "namespace": namespace}
    if sub:
        a["subresource"] = sub
    return a


G = "gitops.reconciler.dev"
NARROW_ALLOWED = [
    _attrs("watch", "gitsyncs", G, namespace=""),
    _attrs("list", "gitsyncs", G),
    _attrs("patch", "gitsyncs", G),
    _attrs("update", "gitsyncs", G, sub="finalizers"),
    _attrs("patch", "gitsyncs", G, sub="status"),
    _attrs("update", "gitsyncs", G, sub="status"),
    _attrs("create", "events", "events.k8s.io"),
    _attrs("patch", "events", "events.k8s.io"),
    _attrs("impersonate", "serviceaccounts", namespace="tenant-a"),
    _attrs("impersonate", "serviceaccounts", namespace=SYSTEM_NS),
    _attrs("list", "apiservices", "apiregistration.k8s.io", namespace=""),
    _attrs("get", "leases", "coordination.k8s.io", namespace=SYSTEM_NS),
    _attrs("create", "leases", "coordination.k8s.io", namespace=SYSTEM_NS),
    _attrs("update", "leases", "coordination.k8s.io", namespace=SYSTEM_NS),
    _attrs("list", "leases", "coordination.k8s.io", namespace=SYSTEM_NS),
    _attrs("delete", "leases", "coordination.k8s.io", namespace=SYSTEM_NS),
]
NARROW_DENIED = [
    # a GitSync's Secrets, ConfigMaps and inventory are read and written as its own identity
    _attrs("get", "secrets"),
    _attrs("get", "configmaps"),
    _attrs("list", "configmaps"),
    _attrs("create", "configmaps"),
    _attrs("patch", "configmaps"),
    _attrs("delete", "configmaps"),
    _attrs("watch", "deployments", "apps", namespace=""),
    _attrs("delete", "namespaces", namespace=""),
    _attrs("delete", "gitsyncs", G),
    _attrs("create", "gitsyncs", G),
    _attrs("list", "secrets"),
    _attrs("watch", "secrets", namespace=""),
    _attrs("create", "secrets"),
    _attrs("create", "deployments", "apps"),
    _attrs("create", "clusterrolebindings", "rbac.authorization.k8s.io", namespace=""),
    _attrs("impersonate", "users", namespace=""),
    _attrs("impersonate", "groups", namespace=""),
    _attrs("update", "leases", "coordination.k8s.io", namespace="kube-system"),
    _attrs("delete", "apiservices", "apiregistration.k8s.io", namespace=""),
]


def test_controller_roles_grant_what_the_controller_needs_and_no_more(
    core: list[dict[str, Any]], kube: client.Kube, namespace: str
) -> None:
    """A ServiceAccount bound to the narrow roles only (not the broad apply role) may do
    exactly what the controller's own work needs."""
    sa = f"narrow-{uuid.uuid4().hex[:6]}"
    kube.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": sa}})
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": namespace}]
    crb = f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{sa}"
    rb = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{SYSTEM_NS}/rolebindings/{sa}"
    try:
        kube.request(
            "POST",
            crb.rsplit("/", 1)[0],
            body={
                "metadata": {"name": sa},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "gitops-reconciler-controller",
                },
                "subjects": subject,
            },
        )
        kube.request(
            "POST",
            rb.rsplit("/", 1)[0],
            body={
                "metadata": {"name": sa},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "gitops-reconciler-leader-election",
                },
                "subjects": subject,
            },
        )
        user = f"system:serviceaccount:{namespace}:{sa}"
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
        not_allowed = [a for a in NARROW_ALLOWED if not _allowed(kube, user, groups, a)]
        assert not not_allowed, f"the controller's roles miss: {not_allowed}"
        too_much = [a for a in NARROW_DENIED if _allowed(kube, user, groups, a)]
        assert not too_much, f"the controller's roles grant more than needed: {too_much}"
    finally:
        for path in (crb, rb):
            try:
                kube.request("DELETE", path)
            except client.KubeError as e:
                if not e.not_found:
                    raise


def test_the_controller_is_narrow_and_only_the_apply_account_is_broad(
    core: list[dict[str, Any]], kube: client.Kube
) -> None:
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{SYSTEM_NS}", "system:authenticated"]
    for attrs in NARROW_ALLOWED:
        assert _allowed(kube, CONTROLLER_SA, groups, attrs), attrs
    for attrs in NARROW_DENIED:
        assert not _allowed(kube, CONTROLLER_SA, groups, attrs), attrs
    apply_sa = f"system:serviceaccount:{SYSTEM_NS}:reconciler-apply"
    for attrs in [_attrs("create", "deployments", "apps"), _attrs("delete", "namespaces", namespace="")]:
        assert _allowed(kube, apply_sa, groups, attrs), attrs
    bindings = kube.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")["items"]
    broad = [
        (b["metadata"]["name"], s.get("namespace"), s.get("name"))
        for b in bindings
        if b["roleRef"]["name"] == "gitops-reconciler-apply"
        for s in b.get("subjects") or []
    ]
    assert broad == [("gitops-reconciler-apply", SYSTEM_NS, "reconciler-apply")], "bound once, to reconciler-apply"


# --- the Deployment -----------------------------------------------------------------------


def test_controller_pods_pass_the_restricted_pod_security_standard(
    core: list[dict[str, Any]], kube: client.Kube, eventually: Any
) -> None:
    ns = kube.get(f"/api/v1/namespaces/{SYSTEM_NS}")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # The admission plugin is really enforcing in that namespace: a root pod is refused.
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }
    with pytest.raises(client.KubeError) as err:
        kube.request("POST", f"/api/v1/namespaces/{SYSTEM_NS}/pods", query=[("dryRun", "All")], body=root_pod)
    assert err.value.status == 403, err.value
    assert "violates PodSecurity" in err.value.message, err.value

    # ... while the ReplicaSet controller creates both controller pods.
    selector = "app.kubernetes.io/name=gitops-reconciler,app.kubernetes.io/component=controller"

    def pods() -> list[dict[str, Any]]:
        items = kube.get(f"/api/v1/namespaces/{SYSTEM_NS}/pods", query=[("labelSelector", selector)])["items"]
        return items if len(items) == 2 else []

    created = eventually(pods, 60, "the 2 controller pods to be created (FailedCreate means PodSecurity refused them)")
    spec = created[0]["spec"]
    assert spec["serviceAccountName"] == "reconciler"
    (container,) = spec["containers"]
    assert container["args"] == [
        "run",
        "--leader-elect",
        "--metrics-addr=:8080",
        "--webhook-addr=:9292",
        "--webhook-secret-file=/etc/reconciler/webhook/secret",
        "--health-addr=:8081",
        "--default-service-account=gitsync",
        "--platform-namespace=reconciler-system",
        "--platform-service-account=reconciler-system/reconciler-apply",
        "--no-cross-namespace-refs",
        "--min-policy-mode=enforce",
    ]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    assert env["POD_NAME"] == "metadata.name"


def test_the_scale_overlay_adds_a_disruption_budget_for_the_controller(
    cluster: Any, kube: client.Kube, core: list[dict[str, Any]]
) -> None:
    """deploy/scale/ applies after the core: the API server accepts its PDB as written."""
    path = f"/apis/policy/v1/namespaces/{SYSTEM_NS}/poddisruptionbudgets/reconciler"
    res = kubectl(cluster, "apply", "-k", str(DEPLOY / "scale"))
    try:
        assert res.returncode == 0, res.stderr
        pdb = kube.get(path)
        deployment = next(d for d in core if d["kind"] == "Deployment")
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        assert pdb["spec"]["maxUnavailable"] == 1
    finally:
        try:
            kube.request("DELETE", path)
        except client.KubeError as e:
            if not e.not_found:
                raise
