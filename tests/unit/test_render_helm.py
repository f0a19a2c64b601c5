"""render/helm.py and the kustomize helmCharts plumbing, with the real pinned Helm and kustomize.

The Helm fixture builds ``helm`` with scripts/build-tool (cached after the first build); if it
cannot be built every test here ERRORS, never skips.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helmcharts import ROOT, build_tool, write_demo_chart
from test_render_support import kustomize_bin, write

from reconciler.render import helm, kustomize, tools
from reconciler.render.errors import RenderError
from reconciler.render.options import Limits

__all__ = ["kustomize_bin"]

KUBE = "v1.35.4"
SERVICE_MONITOR = "monitoring.coreos.com/v1/ServiceMonitor"


@pytest.fixture(scope="session")
def helm_bin() -> Iterator[str]:
    path = build_tool("helm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tools.HELM.env, path)
        yield path


def names(objs: object) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objs]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- binary


def test_script_and_module_pin_the_same_helm_version() -> None:
    script = (ROOT / "scripts" / "build-tool").read_text()
    assert f"VERSION=${{HELM_VERSION:-{tools.HELM.version}}}" in script
    assert f"PKG={tools.HELM.package}\n" in script


def test_built_helm_reports_the_pinned_version(helm_bin: str) -> None:
    assert re.search(rf"/helm-{tools.HELM.version}-go[0-9.]+/helm$", helm_bin)
    out = subprocess.run([helm_bin, "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == tools.HELM.version  # the ldflags took: not the "v4.3" fallback


def test_missing_helm_is_a_render_error_saying_how_to_build_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(tools.HELM.env, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(RenderError, match=r"scripts/build-tool helm"):
        tools.HELM.require("chart demo@0.1.0")


# --------------------------------------------------------------------------- classify (pure)

HOOKS = """
---
# Source: demo/templates/a.yaml
apiVersion: batch/v1
kind: Job
metadata:
  name: late
  annotations: {helm.sh/hook: pre-install, helm.sh/hook-weight: "10"}
---
# Source: demo/templates/a.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: early
  annotations: {helm.sh/hook: "pre-install, pre-upgrade", helm.sh/hook-weight: "-3"}
---
# Source: demo/templates/a.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: same-weight
  annotations: {helm.sh/hook: pre-install, helm.sh/hook-weight: "10", helm.sh/hook-delete-policy: hook-succeeded}
---
# Source: demo/templates/b.yaml
apiVersion: v1
kind: Pod
metadata: {name: t, annotations: {helm.sh/hook: test}}
---
# Source: demo/templates/b.yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: on-delete, annotations: {helm.sh/hook: pre-delete}}
---
# Source: demo/templates/c.yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: after, annotations: {helm.sh/hook: post-upgrade}}
---
# Source: demo/crds/x.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: xs.example.com}
---
# Source: demo/templates/plain.yaml
apiVersion: v1
kind: ConfigMap
metadata: {name: plain}
"""


def test_classify_orders_hooks_like_helm_and_skips_tests_and_delete_hooks() -> None:
    r = helm.classify(HOOKS, chart="demo@1.0.0")
    assert names(r.crds) == ["CustomResourceDefinition/xs.example.com"]
    assert names(r.objects) == ["ConfigMap/plain"]
    # weight first, then Helm's kind order (ServiceAccount before Job), then name
    assert [h.obj["metadata"]["name"] for h in r.pre_hooks(upgrade=False)] == ["early", "same-weight", "late"]
    assert [h.obj["metadata"]["name"] for h in r.pre_hooks(upgrade=True)] == ["early"]
    assert [h.obj["metadata"]["name"] for h in r.post_hooks(upgrade=True)] == ["after"]
    assert r.post_hooks(upgrade=False) == ()
    by_name = {h.obj["metadata"]["name"]: h for h in r.hooks}
    assert by_name["same-weight"].delete_policies == frozenset({"hook-succeeded"})
    assert by_name["late"].delete_policies == frozenset({"before-hook-creation"})  # Helm's default
    assert by_name["early"].source == "demo/templates/a.yaml"
    assert r.skipped == (
        "Pod/t: test hook (never run by a sync)",
        "ConfigMap/on-delete: hook pre-delete has no counterpart in a sync",
    )


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        ('helm.sh/hook-weight: "heavy"', r"hook-weight 'heavy' is not an integer"),
        ("helm.sh/hook-delete-policy: sometimes", r"unknown helm.sh/hook-delete-policy sometimes"),
    ],
)
def test_classify_refuses_bad_hook_annotations(annotation: str, message: str) -> None:
    text = f"""
# Source: demo/templates/a.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: h
  annotations: {{helm.sh/hook: pre-install, {annotation}}}
"""
    with pytest.raises(RenderError, match=message) as e:
        helm.classify(text, chart="demo@1.0.0")
    assert "chart demo@1.0.0" in str(e.value)
    assert "ConfigMap/h" in str(e.value)


def test_classify_refuses_a_document_that_is_not_an_object() -> None:
    with pytest.raises(RenderError, match=r"demo/templates/x.yaml: rendered a document that is not an object"):
        helm.classify("# Source: demo/templates/x.yaml\n- a\n- b\n", chart="demo@1.0.0")


def test_classify_enforces_the_object_limit() -> None:
    text = "\n---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}" for i in range(5))
    with pytest.raises(RenderError, match="more than 3 objects"):
        helm.classify(text, chart="demo@1.0.0", limits=Limits(max_objects=3))


def test_template_args_pass_values_on_stdin_and_capabilities() -> None:
    args = helm.template_args(
        chart_dir=Path("/c/demo"),
        release_name="rel",
        namespace="ns",
        kube_version=KUBE,
        api_versions=["a/v1", "b/v1/K"],
    )
    assert args[:3] == ["template", "rel", "/c/demo"]
    assert args[args.index("--values") + 1] == "-"
    assert {"--include-crds", "--skip-tests"} <= set(args)
    assert args[args.index("--kube-version") + 1] == KUBE
    assert [args[i + 1] for i, a in enumerate(args) if a == "--api-versions"] == ["a/v1", "b/v1/K"]
    with pytest.raises(ValueError, match="release name"):
        helm.template_args(
            chart_dir=Path("/c"), release_name="--post-renderer=x", namespace="n", kube_version=None, api_versions=[]
        )


# --------------------------------------------------------------------------- real helm


@pytest.mark.usefixtures("helm_bin")
def test_render_demo_chart_crds_hooks_capabilities_and_subchart(tmp_path: Path) -> None:
    chart = write_demo_chart(tmp_path)
    r = helm.render_chart(
        chart_dir=chart,
        release_name="rel",
        namespace="apps",
        values={"password": "s3cret-value"},
        kube_version=KUBE,
        api_versions=[SERVICE_MONITOR],
    )
    assert r.chart == "demo@0.1.0"
    assert names(r.crds) == ["CustomResourceDefinition/widgets.demo.example.com"]
    assert names(r.objects) == [
        "Secret/rel-auth",
        "ConfigMap/rel-config",
        "ConfigMap/rel-extra",
        "Service/rel-sub",  # from the subchart
        "ServiceMonitor/rel",  # .Capabilities.APIVersions.Has saw the API
    ]
    config = next(o for o in r.objects if o["metadata"]["name"] == "rel-config")
    assert config["data"]["kube"] == KUBE
    assert [h.obj["metadata"]["name"] for h in r.pre_hooks(upgrade=False)] == ["rel-prepare", "rel-migrate"]
    assert [h.obj["metadata"]["name"] for h in r.pre_hooks(upgrade=True)] == ["rel-migrate"]
    assert [h.obj["metadata"]["name"] for h in r.post_hooks(upgrade=False)] == ["rel-announce"]
    assert all("rel-test" not in h.obj["metadata"]["name"] for h in r.hooks)  # --skip-tests


@pytest.mark.usefixtures("helm_bin")
def test_render_without_the_api_leaves_out_the_capability_guarded_object(tmp_path: Path) -> None:
    r = helm.render_chart(
        chart_dir=write_demo_chart(tmp_path), release_name="rel", namespace="apps", values={"password": "x"}
    )
    assert "ServiceMonitor/rel" not in names(r.objects)


@pytest.mark.usefixtures("helm_bin")
def test_template_error_names_chart_version_and_cause_without_the_secret(tmp_path: Path) -> None:
    chart = write_demo_chart(tmp_path)
    (chart / "templates" / "boom.yaml").write_text('{{ fail (printf "bad token %s" .Values.token) }}\n')
    with pytest.raises(RenderError) as e:
        helm.render_chart(
            chart_dir=chart,
            release_name="rel",
            namespace="apps",
            values={"password": "p", "token": "tok-very-secret"},
            sensitive=["tok-very-secret"],
        )
    msg = str(e.value)
    assert msg.startswith("chart demo@0.1.0: helm template failed: execution error at (demo/templates/boom.yaml")
    assert "bad token ***" in msg
    assert "tok-very-secret" not in msg
    assert str(tmp_path) not in msg
    assert "--debug" not in msg


@pytest.mark.usefixtures("helm_bin")
def test_required_value_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"chart demo@0.1.0: .*secret.yaml.*password is required"):
        helm.render_chart(chart_dir=write_demo_chart(tmp_path), release_name="rel", namespace="apps", values={})


@pytest.mark.usefixtures("helm_bin")
def test_values_never_touch_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values go through stdin: nothing under TMPDIR ever holds the Secret value."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    seen: list[str] = []
    real_run = subprocess.run

    def spy(*args: object, **kw: object) -> object:
        for p in spool.rglob("*"):
            if p.is_file():
                seen.append(p.read_text(errors="replace"))
        return real_run(*args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(helm.subprocess, "run", spy)
    helm.render_chart(
        chart_dir=write_demo_chart(tmp_path), release_name="rel", namespace="a", values={"password": "on-disk-never"}
    )
    assert not any("on-disk-never" in text for text in seen)


def test_chart_without_chart_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"Chart\.yaml is missing"):
        helm.render_chart(chart_dir=tmp_path, release_name="r", namespace="n", values={})


# --------------------------------------------------------------------------- kustomize helmCharts


KUSTOMIZATION = """
helmCharts:
  - name: demo
    releaseName: rel
    namespace: apps
    includeCRDs: true
    valuesInline: {password: from-kustomize}
helmGlobals:
  chartHome: charts
"""


@pytest.mark.usefixtures("helm_bin", "kustomize_bin")
def test_kustomize_helm_charts_render_with_helm_v4(tmp_path: Path) -> None:
    """kustomize v5.8.2's helmCharts generator drives Helm v4 (version --short, template)."""
    app = write(tmp_path / "repo" / "app", {"kustomization.yaml": KUSTOMIZATION})
    write_demo_chart(app / "charts")
    kustomize.preflight(tmp_path / "repo", app, limits=Limits(), enable_helm=True)
    out = kustomize.run_build(
        tmp_path / "repo",
        app,
        max_output=10_000_000,
        enable_helm=True,
        helm_kube_version=KUBE,
        helm_api_versions=[SERVICE_MONITOR],
    )
    kinds = re.findall(r"^kind: (\w+)$", out, re.MULTILINE)
    assert {"CustomResourceDefinition", "ServiceMonitor", "Service", "Secret"} <= set(kinds)
    assert "from-kustomize" in out
    assert f"kube: {KUBE}" in out


@pytest.mark.usefixtures("helm_bin", "kustomize_bin")
def test_kustomize_helm_stays_off_by_default(tmp_path: Path) -> None:
    app = write(tmp_path / "repo" / "app", {"kustomization.yaml": KUSTOMIZATION})
    write_demo_chart(app / "charts")
    with pytest.raises(RenderError, match="helmCharts: Helm charts are not supported"):
        kustomize.preflight(tmp_path / "repo", app, limits=Limits())
    with pytest.raises(RenderError, match="must specify --enable-helm"):
        kustomize.run_build(tmp_path / "repo", app, max_output=10_000_000)


@pytest.mark.parametrize(
    ("chart_yaml", "message"),
    [
        ("  - {name: demo, repo: https://charts.example.com}", r"helmCharts\[0\].repo: remote chart"),
        ("  - {name: absent}", r"chart 'absent' not found under chartHome 'charts' \(charts are never pulled\)"),
        (
            "  - {name: demo, additionalValuesFiles: [https://example.com/v.yaml]}",
            r"additionalValuesFiles\[0\]: remote reference",
        ),
    ],
)
def test_kustomize_helm_preflight_refuses_what_would_reach_the_network(
    tmp_path: Path, chart_yaml: str, message: str
) -> None:
    app = write(tmp_path / "repo" / "app", {"kustomization.yaml": "helmCharts:\n" + chart_yaml + "\n"})
    write_demo_chart(app / "charts")
    with pytest.raises(RenderError, match=message):
        kustomize.preflight(tmp_path / "repo", app, limits=Limits(), enable_helm=True)


def test_kustomize_helm_preflight_refuses_a_chart_symlink_out_of_the_repo(tmp_path: Path) -> None:
    app = write(tmp_path / "repo" / "app", {"kustomization.yaml": "helmCharts:\n  - {name: demo}\n"})
    chart = write_demo_chart(app / "charts")
    (tmp_path / "outside.txt").write_text("host secret")
    (chart / "templates" / "leak.yaml").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(RenderError, match="symlink leading out of the repository"):
        kustomize.preflight(tmp_path / "repo", app, limits=Limits(), enable_helm=True)


def test_a_crds_file_that_starts_with_a_separator_stays_a_chart_crd() -> None:
    # Helm prints a crds/ file verbatim after its Source comment; a leading '---' in the file
    # splits the comment from the object, as kube-prometheus-stack's CRD subchart does.
    text = (
        "---\n# Source: stack/charts/crds/crds/crd-a.yaml\n---\n"
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: as.example.com}\n"
        "---\n# Source: stack/templates/crd.yaml\n"
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: bs.example.com}\n"
    )
    r = helm.classify(text, chart="stack@1.0.0")
    assert names(r.crds) == ["CustomResourceDefinition/as.example.com"]
    assert names(r.objects) == ["CustomResourceDefinition/bs.example.com"]


def test_from_crds_dir_reads_chart_and_subchart_crds_only() -> None:
    assert helm.from_crds_dir("demo/crds/x.yaml")
    assert helm.from_crds_dir("demo/charts/sub/crds/x.yaml")
    assert not helm.from_crds_dir("demo/templates/crds/x.yaml")
    assert not helm.from_crds_dir("demo/charts/sub/templates/crd.yaml")
