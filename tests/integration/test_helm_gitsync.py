"""GitSyncs with ``spec.helm`` end to end: `reconciler run` as a real process, the real control plane,
the real Helm, charts from the GitSync's own git source, from an HTTP(S) Helm repository and from
the OCI registry on loopback.

What a user relies on: the chart's objects are live and ours, a no-op reconcile runs no ``helm``
and downloads nothing, a values change upgrades, a chart bump prunes what it dropped, drift is
corrected by the watch, a Secret-sourced value is never shown, a broken chart leaves everything as
it was, and hooks run in order (a pre-install Job completes before the Deployment exists).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chartservers import ChartRepoServer, registry
from controllers import ROOT, Env, _edit, _events
from helmcharts import _write, build_tool, helm, package, write_demo_chart

from reconciler.kube import discovery
from reconciler.render import tools

PASSWORD = "pw-9d41c7e2b8a3f605"  # comes from a Secret through valuesFrom: must never be printed
OWNER_LABEL = "gitops.reconciler.dev/sync"


@pytest.fixture(scope="module")
def helm_bin() -> Iterator[str]:
    path = build_tool("helm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tools.HELM.env, path)  # the controller process inherits it
        yield path


def tree(chart_dir: Path, prefix: str) -> dict[str, str]:
    """The chart's files as a commit: path under ``prefix`` -> text."""
    return {f"{prefix}/{p.relative_to(chart_dir)}": p.read_text() for p in chart_dir.rglob("*") if p.is_file()}


def secret(kube: Any, ns: str, name: str, data: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    kube.request("POST", f"/api/v1/namespaces/{ns}/secrets", body=body)


def metric(text: str, series: str, **labels: str) -> float:
    """The value of one series (0 when absent), whatever the order of its labels."""
    total = 0.0
    for line in text.splitlines():
        m = re.fullmatch(rf"{series}\{{(.*)\}} (\S+)", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def status(env: Env, ns: str, name: str) -> dict[str, Any]:
    return dict((env.get(ns, name) or {}).get("status") or {})


def applied(env: Env, ns: str, name: str, sha: str) -> dict[str, Any] | None:
    st = status(env, ns, name)
    return st if st.get("lastAppliedRevision") == f"main@sha1:{sha}" and env.ready(ns, name) else None


def helm_spec(chart: str, **fields: Any) -> dict[str, Any]:
    return {"chart": {"spec": {"chart": chart}}, **fields}


def assert_ours(env: Env, ns: str, name: str, st: dict[str, Any]) -> None:
    """Every object in the inventory carries our owner label and our field manager: chart output is
    owned like any other object, so prune, drift and the two-key guard treat it alike."""
    mapper = discovery.RestMapper(env.kube)
    assert st["inventory"], "a chart GitSync with an empty inventory proves nothing"
    for entry in st["inventory"]:
        obj_ns, obj_name, group, kind = entry["id"].split("_")
        if not obj_ns:
            # Cluster-scoped objects (the demo chart's CRD) are shared by every test of the session
            # that installs the chart: whichever sync created one first owns it (the two-key rule).
            continue
        path = mapper.find_group_kind(group, kind).object_path(obj_name, obj_ns or None)
        meta = env.kube.get(path)["metadata"]
        assert meta.get("labels", {}).get(OWNER_LABEL) == f"{ns}.{name}", entry["id"]
        managers = {f["manager"] for f in meta.get("managedFields", []) if f.get("operation") == "Apply"}
        assert "gitops-reconciler" in managers, (entry["id"], managers)


@pytest.mark.usefixtures("helm_bin")
def test_chart_from_the_git_source_lifecycle(
    env: Env, git_repo: Any, namespace: str, eventually: Any, tmp_path: Path
) -> None:
    ns = namespace
    secret(env.kube, ns, "demo-values", {"values.yaml": f"password: {PASSWORD}\n"})
    v1 = tree(write_demo_chart(tmp_path / "v1"), "charts/demo")
    sha = git_repo.commit({**v1, "values/prod.yaml": "greeting: hi\n"}, "chart 0.1.0")
    ctl = env.start("--watch-namespace", ns)
    spec = helm_spec(
        "charts/demo",
        releaseName="web",
        valuesFiles=["values/prod.yaml"],
        valuesFrom=[{"kind": "Secret", "name": "demo-values"}],
    )
    env.gitsync(ns, "demo", git_repo.url, helm=spec)

    st = eventually(lambda: applied(env, ns, "demo", sha), 60, "the chart to be applied")
    assert re.fullmatch(r"demo@0\.1\.0@sha256:[0-9a-f]{64}", st["lastAppliedChart"])
    ids = sorted(e["id"] for e in st["inventory"])
    assert ids == sorted(
        [
            "_widgets.demo.example.com_apiextensions.k8s.io_CustomResourceDefinition",
            f"{ns}_web-auth__Secret",
            f"{ns}_web-config__ConfigMap",
            f"{ns}_web-extra__ConfigMap",
            f"{ns}_web-sub__Service",
        ]
    ), "hooks are not in the inventory"
    assert_ours(env, ns, "demo", st)
    config = env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/web-config")
    assert config["data"]["greeting"] == "hi"  # the values file
    assert config["data"]["kube"].startswith("v1.")  # .Capabilities from discovery
    assert config["metadata"]["labels"][OWNER_LABEL]
    pw = env.kube.get(f"/api/v1/namespaces/{ns}/secrets/web-auth")["data"]["password"]
    assert base64.b64decode(pw).decode() == PASSWORD
    # hooks: the pre-install ServiceAccount stays, the migrate ConfigMap is gone (hook-succeeded),
    # the post-install ConfigMap is there, the test Pod never ran
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/serviceaccounts/web-prepare")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/web-migrate") is None
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/web-announce")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/pods/web-test") is None

    # no-op reconciles: no helm run (render cache hits only)
    labels = {"namespace": ns, "name": "demo"}
    eventually(
        lambda: metric(ctl.metrics(), "reconciler_helm_renders_total", cache="hit", **labels) >= 2,
        30,
        "two no-op reconciles",
    )
    assert metric(ctl.metrics(), "reconciler_helm_renders_total", cache="miss", **labels) == 1

    # drift on a chart object is corrected through the watch
    _edit(env.kube, f"/api/v1/namespaces/{ns}/configmaps/web-config", {"data": {"greeting": "by hand"}})
    eventually(
        lambda: env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/web-config")["data"]["greeting"] == "hi",
        30,
        "the drift to be corrected",
    )
    assert _events(env, ns, "demo", "DriftDetected")

    # a values change in git upgrades
    sha = git_repo.commit({"values/prod.yaml": "greeting: hello again\n"}, "values")
    st = eventually(lambda: applied(env, ns, "demo", sha), 30, "the values change")
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/web-config")["data"]["greeting"] == "hello again"
    assert st["lastPlan"]["configure"] == 1, "only the changed object is written"

    # a chart that fails to render: Ready=False, nothing pruned, nothing changed
    broken = git_repo.commit({"charts/demo/templates/extra.yaml": "{{ .Values.nope.nested }}\n"}, "broken")

    def failed() -> dict[str, Any] | None:
        st = status(env, ns, "demo")
        ready = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
        return st if ready and ready[0]["status"] == "False" and broken in st.get("lastAttemptedRevision", "") else None

    st = eventually(failed, 30, "Ready=False for the broken chart")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "BuildFailed"
    assert "chart demo@0.1.0" in ready["message"]
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/web-extra"), "nothing pruned"

    # the chart bumped to 0.2.0 (which no longer has the 'extra' ConfigMap): pruned
    v2 = tree(write_demo_chart(tmp_path / "v2", version="0.2.0"), "charts/demo")
    sha = git_repo.commit({**v2, "charts/demo/templates/extra.yaml": None}, "chart 0.2.0")
    st = eventually(lambda: applied(env, ns, "demo", sha), 30, "the chart bump")
    assert st["lastAppliedChart"].startswith("demo@0.2.0@sha256:")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/web-extra") is None
    assert any("web-extra" in e["note"] for e in _events(env, ns, "demo", "Pruned"))

    # reverting the bump brings it back
    sha = git_repo.commit({**v1, "charts/demo/templates/extra.yaml": v1["charts/demo/templates/extra.yaml"]}, "revert")
    st = eventually(lambda: applied(env, ns, "demo", sha), 30, "the revert")
    assert st["lastAppliedChart"].startswith("demo@0.1.0@sha256:")
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/web-extra")

    # the Secret-sourced value is nowhere: status, Events, the log
    assert PASSWORD not in json.dumps(env.get(ns, "demo"))
    assert PASSWORD not in json.dumps(env.events(ns, "demo"))
    assert PASSWORD not in ctl.log.read_text()


JOB_CHART = {
    "Chart.yaml": """
        apiVersion: v2
        name: jobs
        version: 1.0.0
        """,
    "values.yaml": """
        failHook: false
        """,
    "templates/migrate.yaml": """
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: {{ .Release.Name }}-migrate
          annotations:
            helm.sh/hook: pre-install,pre-upgrade
        spec:
          backoffLimit: 0
          {{- if .Values.failHook }}
          activeDeadlineSeconds: 2
          {{- end }}
          template:
            spec:
              restartPolicy: Never
              {{- if .Values.failHook }}
              nodeSelector: {nowhere: "true"}
              {{- end }}
              containers: [{name: migrate, image: busybox, command: ["true"]}]
        """,
    "templates/deployment.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}
        spec:
          replicas: 1
          selector: {matchLabels: {app: {{ .Release.Name }}}}
          template:
            metadata: {labels: {app: {{ .Release.Name }}}}
            spec:
              containers: [{name: app, image: nginx}]
        """,
}


@pytest.mark.usefixtures("helm_bin")
def test_a_pre_install_job_completes_before_the_deployment_and_a_failing_one_stops_the_sync(
    env: Env, git_repo: Any, namespace: str, eventually: Any, tmp_path: Path
) -> None:
    ns = namespace
    _write(tmp_path / "jobs", JOB_CHART)
    sha = git_repo.commit(tree(tmp_path / "jobs", "chart"), "jobs chart")
    env.start("--watch-namespace", ns)
    env.gitsync(ns, "jobs", git_repo.url, helm=helm_spec("chart", releaseName="api"))
    eventually(lambda: applied(env, ns, "jobs", sha), 90, "the chart with its pre-install Job to be applied")
    job = env.kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/api-migrate")
    dep = env.kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/api")
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    assert job["status"]["completionTime"] <= dep["metadata"]["creationTimestamp"]

    # an upgrade whose pre-upgrade Job fails: HookFailed naming it, the Deployment untouched
    deployment = (tmp_path / "jobs/templates/deployment.yaml").read_text().replace("image: nginx}", "image: nginx2}")
    bad = git_repo.commit(
        {"chart/values.yaml": "failHook: true\n", "chart/templates/deployment.yaml": deployment}, "bad"
    )

    def failed() -> dict[str, Any] | None:
        st = status(env, ns, "jobs")
        ready = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
        return st if ready and ready[0]["status"] == "False" and bad in st.get("lastAttemptedRevision", "") else None

    st = eventually(failed, 60, "Ready=False for the failing hook")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "HookFailed"
    assert f"Job/{ns}/api-migrate (pre-upgrade)" in ready["message"]
    live = env.kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/api")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx", "nothing applied after the hook"
    assert st["lastAppliedRevision"] == f"main@sha1:{sha}"


@pytest.fixture(scope="module")
def packaged(helm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("helm-gitsync-charts")
    return package(helm_bin, write_demo_chart(root / "src"), root / "packages", home=root / "home")


def test_charts_from_an_http_repository_and_an_oci_registry(
    env: Env, git_repo: Any, namespace: str, eventually: Any, tmp_path: Path, helm_bin: str, packaged: Path
) -> None:
    ns = namespace
    secret(env.kube, ns, "demo-values", {"values.yaml": f"password: {PASSWORD}\n"})
    sha = git_repo.commit({"README.md": "charts come from elsewhere\n"}, "no chart here")
    repo = ChartRepoServer(tmp_path / "repo").start()
    try:
        shutil.copy(packaged, repo.root)
        helm(helm_bin, "repo", "index", str(repo.root), "--url", repo.url, home=tmp_path / "home")
        with registry(build_tool("registry"), tmp_path / "registry") as reg:
            out = helm(helm_bin, "push", str(packaged), f"oci://{reg.host}/charts", "--plain-http", home=tmp_path / "h")
            digest = re.search(r"Digest: (sha256:[0-9a-f]{64})", out)
            assert digest
            ctl = env.start("--watch-namespace", ns)
            values = [{"kind": "Secret", "name": "demo-values"}]
            repo_chart = {"chart": "demo", "version": "0.1.x", "repository": {"url": repo.url}}
            oci_chart = {"chart": "demo", "version": "^0.1", "repository": {"url": f"oci://{reg.host}/charts"}}
            oci_chart["repository"]["insecure"] = True  # type: ignore[index]
            env.gitsync(ns, "fromrepo", git_repo.url, helm={"chart": {"spec": repo_chart}, "valuesFrom": values})
            env.gitsync(ns, "fromoci", git_repo.url, helm={"chart": {"spec": oci_chart}, "valuesFrom": values})
            # both releases render the chart's CRD: the first creates it, the second leaves it (create-only)
            a = eventually(lambda: applied(env, ns, "fromrepo", sha), 60, "the repository chart")
            b = eventually(lambda: applied(env, ns, "fromoci", sha), 60, "the OCI chart")
            assert b["lastAppliedChart"] == f"demo@0.1.0@{digest.group(1)}"
            assert a["lastAppliedChart"].startswith("demo@0.1.0@sha256:")
            for release in ("fromrepo", "fromoci"):
                assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/{release}-config")
            # the shared CRD is labelled by whichever release created it: check the namespaced objects
            for release, st in (("fromrepo", a), ("fromoci", b)):
                namespaced = [e for e in st["inventory"] if not e["id"].startswith("_")]
                assert_ours(env, ns, release, {"inventory": namespaced})
            # no-op reconciles download no chart again
            eventually(
                lambda: (
                    metric(ctl.metrics(), "reconciler_helm_renders_total", cache="hit", name="fromoci") >= 2
                    and metric(ctl.metrics(), "reconciler_helm_renders_total", cache="hit", name="fromrepo") >= 2
                ),
                30,
                "two no-op reconciles each",
            )
            assert repo.downloads(".tgz") == 1
            assert reg.blob_downloads() == 1

            # a range that matches nothing: ArtifactFailed naming chart and range, nothing applied
            missing = {"chart": "demo", "version": "^9", "repository": {"url": repo.url}}
            env.gitsync(ns, "missing", git_repo.url, helm={"chart": {"spec": missing}, "valuesFrom": values})

            def refused() -> dict[str, Any] | None:
                ready = [c for c in status(env, ns, "missing").get("conditions", []) if c["type"] == "Ready"]
                return ready[0] if ready and ready[0]["status"] == "False" and "fetch" in ready[0]["message"] else None

            ready = eventually(refused, 30, "Ready=False for a range that matches nothing")
            assert ready["reason"] == "ArtifactFailed"
            assert "demo" in ready["message"]
            assert "^9" in ready["message"]
            assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/missing-config") is None
            assert PASSWORD not in ctl.log.read_text()
    finally:
        repo.stop()


def ready_false(env: Env, ns: str, name: str, sha: str) -> dict[str, Any] | None:
    """The Ready condition once the revision ``sha`` was attempted and refused."""
    st = status(env, ns, name)
    ready = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
    return ready[0] if ready and ready[0]["status"] == "False" and sha in st.get("lastAttemptedRevision", "") else None


@pytest.mark.usefixtures("helm_bin")
def test_a_failing_pre_install_hook_on_the_first_sync_applies_nothing(
    env: Env, git_repo: Any, namespace: str, eventually: Any, tmp_path: Path
) -> None:
    ns = namespace
    _write(tmp_path / "jobs", {**JOB_CHART, "values.yaml": "failHook: true\n"})
    sha = git_repo.commit(tree(tmp_path / "jobs", "chart"), "jobs chart whose pre-install Job cannot run")
    env.start("--watch-namespace", ns)
    env.gitsync(ns, "jobs", git_repo.url, helm=helm_spec("chart", releaseName="api"))
    ready = eventually(lambda: ready_false(env, ns, "jobs", sha), 60, "Ready=False for the failing pre-install hook")
    assert ready["reason"] == "HookFailed"
    assert f"Job/{ns}/api-migrate (pre-install)" in ready["message"]
    assert env.kube.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/api") is None, "nothing after the hook"
    assert not status(env, ns, "jobs").get("lastAppliedRevision")
    assert not status(env, ns, "jobs").get("inventory")


POLICY_CHART = {
    "Chart.yaml": """
        apiVersion: v2
        name: gated
        version: 1.0.0
        """,
    "templates/config.yaml": """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-config
        data: {k: v}
        """,
    "templates/deployment.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}
          labels: {app.kubernetes.io/name: {{ .Release.Name }}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: {{ .Release.Name }}}}
          template:
            metadata: {labels: {app: {{ .Release.Name }}}}
            spec:
              containers:
                - name: app
                  image: registry.k8s.io/pause:latest
                  resources:
                    requests: {cpu: 10m, memory: 8Mi}
                    limits: {cpu: 50m, memory: 16Mi}
        """,
}


@pytest.mark.usefixtures("helm_bin")
def test_a_chart_that_fails_the_policy_gate_is_not_applied(
    env: Env, git_repo: Any, namespace: str, eventually: Any, tmp_path: Path
) -> None:
    ns = namespace
    _write(tmp_path / "gated", POLICY_CHART)
    sha = git_repo.commit(tree(tmp_path / "gated", "chart"), "a chart with a :latest image")
    env.start("--watch-namespace", ns, "--policies", str(ROOT / "policies"))
    env.gitsync(ns, "gated", git_repo.url, helm=helm_spec("chart", releaseName="web"), policy={"mode": "enforce"})
    ready = eventually(lambda: ready_false(env, ns, "gated", sha), 60, "the chart to be refused by policy")
    assert ready["reason"] == "PolicyViolation"
    assert "image-tags" in ready["message"], ready["message"]
    # judged in the release namespace it would be applied to, not in "default"
    assert f"Deployment/{ns}/web in chart gated@1.0.0" in ready["message"], ready["message"]
    assert env.kube.get_or_none(f"/apis/apps/v1/namespaces/{ns}/deployments/web") is None
    assert env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/web-config") is None, "nothing of the chart"
    assert not status(env, ns, "gated").get("inventory")
