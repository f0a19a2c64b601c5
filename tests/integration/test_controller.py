"""`reconciler run` end to end: a real controller process against the real control plane,
GitSync objects of the real CRD in deploy/, git over file://."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import yaml
from controllers import GS, ROOT, WEBHOOK_SECRET, Env, _edit, _events, cm, free_port


def test_gitsync_lifecycle(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    sha = git_repo.commit({"app/a.yaml": cm("a", ns, {"v": "1"})}, "first")
    ctl = env.start("--watch-namespace", ns)
    env.gitsync(ns, "app", git_repo.url, path="app", substitute={})  # strict substitution, for the broken commit

    obj = eventually(lambda: env.ready(ns, "app"), 60, "GitSync app to become Ready")
    assert obj["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"
    assert obj["status"]["inventory"] == [{"id": f"{ns}_a__ConfigMap", "v": "v1"}]
    assert obj["status"]["lastPlan"]["create"] == 1
    assert "gitops.reconciler.dev/finalizer" in obj["metadata"]["finalizers"]
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/a")["data"] == {"v": "1"}
    assert any(e["reason"] == "Synced" and e["type"] == "Normal" for e in env.events(ns, "app"))
    m = ctl.metrics()
    assert f'reconciler_gitsync_ready{{name="app",namespace="{ns}"}} 1.0' in m
    assert f'reconciler_applied_revision_info{{name="app",namespace="{ns}",revision="main@sha1:{sha}"}} 1.0' in m

    # a pushed commit is applied within the interval (5s)
    sha2 = git_repo.commit({"app/a.yaml": cm("a", ns, {"v": "2"})}, "second")
    eventually(
        lambda: (env.get(ns, "app") or {}).get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha2}",
        15,
        "the new commit to be applied",
    )
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/a")["data"] == {"v": "2"}

    # a broken commit: Ready=False naming the object, one ERROR line, a SyncFailed Event, old objects untouched
    bad = git_repo.commit({"app/b.yaml": cm("b", ns, {"port": "${UNDEFINED}"})}, "broken")

    def failed() -> dict[str, Any] | None:
        o = env.get(ns, "app")
        c = [c for c in (o or {}).get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return o if c and c[0]["status"] == "False" and bad in o["status"].get("lastAttemptedRevision", "") else None  # type: ignore[index]

    o = eventually(failed, 20, "Ready=False for the broken commit")
    ready = next(c for c in o["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BuildFailed"
    assert "b.yaml" in ready["message"]
    assert "ConfigMap/" in ready["message"]
    assert "UNDEFINED" in ready["message"]
    assert o["status"]["lastAppliedRevision"] == f"main@sha1:{sha2}"
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/a")["data"] == {"v": "2"}, "previous revision untouched"
    assert any(e["reason"] == "RenderFailed" and e["type"] == "Warning" for e in env.events(ns, "app"))
    errors = [line for line in ctl.lines() if line.get("level") == "ERROR" and bad in line.get("revision", "")]
    assert len({e["msg"] for e in errors}) == 1, errors
    assert errors[0]["gitsync"] == f"{ns}/app"
    assert errors[0]["reason"] == "BuildFailed"

    # fixed again
    git_repo.commit({"app/b.yaml": cm("b", ns, {"port": "80"})}, "fix")
    eventually(lambda: env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/b"), 20, "the fixed commit")

    # an object the API server rejects: Ready=False naming it, a SyncFailed Event, nothing of it applied
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bad-port", "namespace": ns},
        "spec": {"ports": [{"port": 99999}]},
    }
    rejected = git_repo.commit(
        {"app/svc.yaml": yaml.safe_dump(svc), "app/c.yaml": cm("c", ns, {"k": "v"})}, "invalid service"
    )

    def rejected_status() -> dict[str, Any] | None:
        o = env.get(ns, "app")
        c = [c for c in (o or {}).get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        ok = c and c[0]["status"] == "False" and rejected in o["status"].get("lastAttemptedRevision", "")  # type: ignore[index]
        return c[0] if ok else None

    ready = eventually(rejected_status, 20, "Ready=False for the rejected object")
    assert ready["reason"] == "ReconciliationFailed"
    assert f"Service/{ns}/bad-port" in ready["message"]
    assert "99999" in ready["message"]
    assert any(f"Service/{ns}/bad-port" in e["note"] for e in _events(env, ns, "app", "SyncFailed"))
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/c") is None, "nothing of that revision applied"
    git_repo.commit({"app/svc.yaml": None}, "drop the invalid service")
    eventually(lambda: env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/c"), 20, "the repaired revision")

    # deleted with prune: true -> its objects go
    env.kube.request("DELETE", f"{GS}/namespaces/{ns}/gitsyncs/app")
    eventually(lambda: env.get(ns, "app") is None, 20, "the GitSync to be finalized")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/a") is None
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/b") is None
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/c") is None


def test_depends_on_suspend_requested_at_and_orphaning(
    env: Env, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    git_repo.commit({"base/x.yaml": cm("x", ns, {"k": "v"}), "top/y.yaml": cm("y", ns, {"k": "v"})})
    env.start("--watch-namespace", ns)
    env.gitsync(ns, "top", git_repo.url, path="top", dependsOn=[{"name": "base"}], prune=False)

    def top_ready() -> list[dict[str, Any]]:
        top = env.get(ns, "top")
        return [c for c in (top or {}).get("status", {}).get("conditions", []) if c["type"] == "Ready"]

    ready = eventually(top_ready, 30, "a Ready condition on top (the controller may still be starting)")
    assert ready[0]["reason"] == "DependencyNotReady"
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/y") is None
    env.gitsync(ns, "base", git_repo.url, path="base")
    eventually(lambda: env.ready(ns, "top"), 30, "top to sync once base is Ready")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/y") is not None

    # suspend: a new commit is not applied
    env.kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/top",
        body={"spec": {"suspend": True, "interval": "1h"}},
        content_type="application/merge-patch+json",
    )
    time.sleep(1)
    git_repo.commit({"top/y.yaml": cm("y", ns, {"k": "changed"})}, "change y")
    time.sleep(4)
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/y")["data"] == {"k": "v"}
    # resumed with a long interval: only the requested-at annotation brings the change in now
    env.kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/top",
        body={"spec": {"suspend": False}},
        content_type="application/merge-patch+json",
    )
    eventually(lambda: env.ready(ns, "top"), 20, "top to reconcile after resume")
    git_repo.commit({"top/y.yaml": cm("y", ns, {"k": "requested"})}, "change y again")
    stamp = str(uuid.uuid4())
    env.kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/top",
        body={"metadata": {"annotations": {"gitops.reconciler.dev/requested-at": stamp}}},
        content_type="application/merge-patch+json",
    )
    eventually(
        lambda: env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/y")["data"] == {"k": "requested"},
        20,
        "the requested-at annotation to trigger a reconcile",
    )
    eventually(
        lambda: (env.get(ns, "top") or {}).get("status", {}).get("lastHandledRequestedAt") == stamp, 10, "handled"
    )

    # prune: false -> deleting the GitSync orphans its objects
    env.kube.request("DELETE", f"{GS}/namespaces/{ns}/gitsyncs/top")
    eventually(lambda: env.get(ns, "top") is None, 20, "top to be finalized")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/y") is not None


def test_leader_election_fails_over(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    git_repo.commit({"a.yaml": cm("le", ns, {"k": "v"})})
    lease_args = ("--watch-namespace", ns, "--leader-elect", "--lease-namespace", ns, "--lease-duration", "6")
    first = env.start(*lease_args, name="first")
    eventually(lambda: any("became leader" in ln.get("msg", "") for ln in first.lines()), 20, "a leader")
    second = env.start(*lease_args, name="second")
    env.gitsync(ns, "le", git_repo.url)
    eventually(lambda: env.ready(ns, "le"), 30, "the leader to sync")
    time.sleep(2)
    assert not any("became leader" in ln.get("msg", "") for ln in second.lines())
    assert not any(ln.get("gitsync") for ln in second.lines()), "the standby must not reconcile"

    first.proc.kill()  # no chance to hand the lease back: the standby must wait for it to expire
    first.proc.wait()
    # Lease duration 6 s: the standby takes over once it has not seen a renewal for that long
    # (the 20 s bound only keeps a broken failover from hanging the test).
    eventually(lambda: any("became leader" in ln.get("msg", "") for ln in second.lines()), 20, "failover")
    env.kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/le",
        body={"metadata": {"annotations": {"gitops.reconciler.dev/requested-at": "after-failover"}}},
        content_type="application/merge-patch+json",
    )
    eventually(
        lambda: (env.get(ns, "le") or {}).get("status", {}).get("lastHandledRequestedAt") == "after-failover",
        20,
        "the new leader to reconcile",
    )


def _deployment(ns: str, replicas: int) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        }
    )


def test_drift_is_detected_within_seconds_and_corrected(
    env: Env, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    git_repo.commit({"web.yaml": _deployment(ns, 2), "cm.yaml": cm("settings", ns, {"mode": "git"})})
    ctl = env.start("--watch-namespace", ns)
    env.gitsync(ns, "drift", git_repo.url, interval="1h")
    eventually(lambda: env.ready(ns, "drift"), 30, "the first sync")
    dep_path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"

    _edit(env.kube, dep_path, {"spec": {"replicas": 5}})
    eventually(lambda: _events(env, ns, "drift", "DriftDetected"), 5, "a DriftDetected Event within 5 s")
    detected = _events(env, ns, "drift", "DriftDetected")[0]
    assert f"Deployment/{ns}/web" in detected["note"]
    assert "spec.replicas" in detected["note"]
    # interval is 1h: a correction within seconds can only come from the drift watch
    eventually(lambda: env.kube.get(dep_path)["spec"]["replicas"] == 2, 10, "the drift to be corrected")
    eventually(lambda: _events(env, ns, "drift", "DriftCorrected"), 10, "a DriftCorrected Event")
    eventually(lambda: f'reconciler_drift_objects{{name="drift",namespace="{ns}"}} 0.0' in ctl.metrics(), 10, "gauge 0")

    # our own apply of a new revision is not drift
    def drift_lines() -> int:  # Events are deduplicated; the log has one WARNING per detection
        return sum(1 for ln in ctl.lines() if ln.get("reason") == "DriftDetected" and ln.get("level") == "WARNING")

    detected_before = drift_lines()
    assert detected_before >= 1
    sha = git_repo.commit({"web.yaml": _deployment(ns, 3)}, "scale in git")
    env.kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/drift",
        body={"metadata": {"annotations": {"gitops.reconciler.dev/requested-at": "scale"}}},
        content_type="application/merge-patch+json",
    )
    eventually(
        lambda: sha in str((env.get(ns, "drift") or {}).get("status", {}).get("lastAppliedRevision")), 10, "sync"
    )
    time.sleep(1)
    assert drift_lines() == detected_before, "our own apply of a new revision was reported as drift"
    assert env.kube.get(dep_path)["spec"]["replicas"] == 3

    # an object deleted out of band is drift too, and comes back
    env.kube.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/settings")
    eventually(lambda: env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/settings"), 10, "re-creation")


def test_drift_warn_mode_reports_and_leaves_it(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    git_repo.commit({"cm.yaml": cm("settings", ns, {"mode": "git"})})
    ctl = env.start("--watch-namespace", ns)
    env.gitsync(ns, "warn", git_repo.url, interval="2s", drift={"mode": "warn"})
    eventually(lambda: env.ready(ns, "warn"), 30, "the first sync")
    _edit(env.kube, f"/api/v1/namespaces/{ns}/configmaps/settings", {"data": {"mode": "by-hand"}})
    eventually(
        lambda: f'reconciler_drift_objects{{name="warn",namespace="{ns}"}} 1.0' in ctl.metrics(), 5, "drift gauge 1"
    )
    obj = eventually(
        lambda: (
            (env.get(ns, "warn") or {}).get("status", {}).get("drift", {}).get("objects") == 1 and env.get(ns, "warn")
        ),
        5,
        "status.drift",
    )
    drifted = next(c for c in obj["status"]["conditions"] if c["type"] == "Drifted")
    assert drifted["status"] == "True"
    assert "data.mode" in drifted["message"]
    time.sleep(5)  # two more intervals: still not corrected
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/settings")["data"] == {"mode": "by-hand"}


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_signed_webhook_push_applies_within_seconds(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    import hashlib
    import hmac

    ns = namespace
    git_repo.commit({"cm.yaml": cm("hooked", ns, {"v": "1"})})
    port = free_port()
    ctl = env.start("--watch-namespace", ns, webhook_port=port)
    env.gitsync(ns, "hooked", git_repo.url, interval="1h")
    eventually(lambda: env.ready(ns, "hooked"), 30, "the first sync")
    eventually(lambda: _post(port, "/hook/none", b"", {}) == 404, 10, "the webhook receiver")

    git_repo.commit({"cm.yaml": cm("hooked", ns, {"v": "2"})}, "push")
    payload = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": env.url(git_repo.url)}}).encode()
    bad = "sha256=" + hmac.new(b"wrong-secret-wrong-secret", payload, hashlib.sha256).hexdigest()
    assert _post(port, "/hook/github", payload, {"X-Hub-Signature-256": bad, "X-GitHub-Event": "push"}) == 401
    assert _post(port, "/hook/github", payload, {"X-GitHub-Event": "push"}) == 401
    time.sleep(2)
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/hooked")["data"] == {"v": "1"}, (
        "a refused call triggers nothing"
    )
    assert any("bad or missing signature" in ln.get("msg", "") for ln in ctl.lines())

    good = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    assert _post(port, "/hook/github", payload, {"X-Hub-Signature-256": good, "X-GitHub-Event": "push"}) == 202
    # interval is 1h: only the webhook can bring the commit in; latency figures are in bench/latency.py
    eventually(
        lambda: env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/hooked")["data"] == {"v": "2"},
        5,
        "the pushed commit to be applied after the webhook",
    )
    m = ctl.metrics()
    assert 'reconciler_webhook_requests_total{provider="github",result="unauthorized"} 2.0' in m
    assert 'reconciler_webhook_requests_total{provider="github",result="accepted"} 1.0' in m


def test_service_account_impersonation_limits_what_a_gitsync_may_apply(
    env: Env, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    k = env.kube
    k.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", body={"metadata": {"name": "deployer"}})
    k.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        body={
            "metadata": {"name": "deployer"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
                }
            ],
        },
    )
    k.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        body={
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}],
        },
    )
    git_repo.commit({"cm.yaml": cm("tenant", ns, {"k": "v"})})
    env.start("--watch-namespace", ns)
    env.gitsync(ns, "tenant", git_repo.url, serviceAccountName="deployer")
    eventually(lambda: env.ready(ns, "tenant"), 30, "the tenant's ConfigMap to sync as the ServiceAccount")
    managers = {f["manager"] for f in k.get(f"/api/v1/namespaces/{ns}/configmaps/tenant")["metadata"]["managedFields"]}
    assert managers == {"gitops-reconciler"}

    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sneaky", "namespace": ns}}
    git_repo.commit({"sa.yaml": yaml.safe_dump(sa)}, "something the tenant may not create")

    def refused() -> dict[str, Any] | None:
        o = env.get(ns, "tenant")
        c = [c for c in (o or {}).get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return c[0] if c and c[0]["status"] == "False" else None

    ready = eventually(refused, 20, "the sync to fail for lack of permission")
    assert "Forbidden" in ready["message"]
    assert f"system:serviceaccount:{ns}:deployer" in ready["message"]
    assert k.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/sneaky") is None


def test_policy_enforce_refuses_the_whole_revision(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    git_repo.commit({"old.yaml": cm("old", ns, {"k": "v"}), "keep.yaml": cm("keep", ns, {"k": "v"})})
    ctl = env.start("--watch-namespace", ns, "--policies", str(ROOT / "policies"))
    env.gitsync(ns, "gated", git_repo.url, policy={"mode": "enforce"})
    eventually(lambda: env.ready(ns, "gated"), 30, "the first (clean) revision")

    bad = yaml.safe_load(_deployment(ns, 1))
    bad["metadata"]["labels"] = {"app.kubernetes.io/name": "web"}
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/pause:latest"
    bad["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "10m", "memory": "8Mi"},
        "limits": {"cpu": "50m", "memory": "16Mi"},
    }
    files: dict[str, str | None] = {f"good-{i}.yaml": cm(f"good-{i}", ns, {"i": str(i)}) for i in range(20)}
    files["web.yaml"] = yaml.safe_dump(bad)
    files["old.yaml"] = None
    sha = git_repo.commit(files, "twenty good objects and one :latest image")

    def refused() -> dict[str, Any] | None:
        o = env.get(ns, "gated")
        c = [c for c in (o or {}).get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return c[0] if c and c[0]["status"] == "False" and sha in o["status"].get("lastAttemptedRevision", "") else None  # type: ignore[index]

    ready = eventually(refused, 30, "the revision to be refused by policy")
    assert ready["reason"] == "PolicyViolation"
    assert "image-tags" in ready["message"]
    assert f"Deployment/{ns}/web" in ready["message"]
    assert all(env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/good-{i}") is None for i in range(20))
    assert env.kube.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/web") is None
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/old") is not None, "nothing pruned"
    assert any("image-tags" in e["note"] for e in _events(env, ns, "gated", "PolicyViolation"))
    m = ctl.metrics()
    assert f'reconciler_policy_violations{{name="gated",namespace="{ns}",policy="image-tags"}} 1.0' in m


def test_server_normalised_fields_are_not_drift(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": ns},
        "stringData": {"password": "s3cret-pass"},
    }
    dep = yaml.safe_load(_deployment(ns, 1))
    dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": 0.5, "memory": "1G"}}
    git_repo.commit({"s.yaml": yaml.safe_dump(secret), "d.yaml": yaml.safe_dump(dep)})
    ctl = env.start("--watch-namespace", ns)
    env.gitsync(ns, "norm", git_repo.url, interval="1h")
    eventually(lambda: env.ready(ns, "norm"), 30, "the first sync")

    def drift_lines() -> list[dict[str, Any]]:
        return [ln for ln in ctl.lines() if ln.get("reason") == "DriftDetected"]

    # unrelated changes by others: a label on the Secret, the deployment controller's status updates
    env.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/secrets/creds",
        query=[("fieldManager", "someone")],
        body={"metadata": {"labels": {"team": "x"}}},
        content_type="application/merge-patch+json",
    )
    time.sleep(2)
    assert drift_lines() == [], "stringData stored as data, 0.5 stored as 500m: not drift"

    _edit(env.kube, f"/api/v1/namespaces/{ns}/secrets/creds", {"data": {"password": "Y2hhbmdlZA=="}})
    eventually(drift_lines, 5, "the changed Secret value to be drift")
    line = drift_lines()[0]["msg"]
    assert f"Secret/{ns}/creds" in line
    assert "s3cret-pass" not in ctl.log.read_text()
