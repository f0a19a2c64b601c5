"""``reconciler render|diff|sync --chart``: a chart checked and synced from the command line, with the
real Helm and (for diff and sync) the real control plane, through the same render step and pipeline
a GitSync uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from helmcharts import build_tool, write_demo_chart

from reconciler import cli
from reconciler.kube import client
from reconciler.render import tools

PASSWORD = "pw-cli-5be0c1d94a7f"


@pytest.fixture(scope="module")
def helm_bin() -> Iterator[str]:
    path = build_tool("helm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tools.HELM.env, path)
        yield path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    write_demo_chart(root / "charts")
    (root / "ci.yaml").write_text(f"password: {PASSWORD}\ngreeting: from-ci\n")
    return root


def invoke(*argv: str) -> Result:
    return CliRunner().invoke(cli.cli, list(argv), catch_exceptions=False)


@pytest.mark.usefixtures("helm_bin")
def test_render_prints_the_chart_crds_objects_and_hooks(source: Path) -> None:
    r = invoke(
        "render", str(source), "--chart", "charts/demo", "--values", str(source / "ci.yaml"), "--release-name", "web"
    )
    assert r.exit_code == 0, r.output
    docs = list(yaml.safe_load_all(r.output))
    names = [f"{d['kind']}/{d['metadata']['name']}" for d in docs]
    assert names[0] == "CustomResourceDefinition/widgets.demo.example.com"
    assert {"ConfigMap/web-config", "Secret/web-auth", "Service/web-sub", "ConfigMap/web-migrate"} <= set(names)
    assert "Pod/web-test" not in names  # test hooks are skipped
    config = next(d for d in docs if d["metadata"]["name"] == "web-config")
    assert config["data"]["greeting"] == "from-ci"


@pytest.mark.usefixtures("helm_bin")
def test_render_of_a_chart_that_fails_exits_2_naming_it(source: Path) -> None:
    r = invoke("render", str(source), "--chart", "charts/demo")
    assert r.exit_code == 2
    assert "chart demo@0.1.0" in r.output
    assert "password is required" in r.output


@pytest.mark.usefixtures("helm_bin")
def test_sync_then_diff_a_chart(source: Path, cluster: Any, kube: client.Kube, namespace: str, tmp_path: Path) -> None:
    common = ["--dir", str(source), "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]
    chart = ["--chart", "charts/demo", "--release-name", "web", "--target-namespace", namespace, "--name", "webcli"]
    values = ["--values", str(source / "ci.yaml")]
    r = invoke("sync", *common, *chart, *values)
    assert r.exit_code == 0, r.output
    assert kube.get(f"/api/v1/namespaces/{namespace}/configmaps/web-config")["data"]["greeting"] == "from-ci"
    assert kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/web-announce"), "post-install hook ran"
    assert kube.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/web-migrate") is None, "hook-succeeded"
    assert PASSWORD not in r.output

    r = invoke("diff", *common, *chart, *values)
    assert r.exit_code == 0, r.output
    (tmp_path / "more.yaml").write_text("greeting: changed\n")
    r = invoke("diff", *common, *chart, *values, "--values", str(tmp_path / "more.yaml"))
    assert r.exit_code == 1, r.output
    assert f"configure ConfigMap/{namespace}/web-config" in r.output
    assert PASSWORD not in r.output
