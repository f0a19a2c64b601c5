"""examples/fleet/charts rendered for real: the three addon GitSyncs, their charts packaged by the real Helm
in the upstream charts' shape (tests/helmcharts.py ADDON_CHARTS) and served from a loopback Helm
repository in place of the public URL, with each fleet cluster's cluster-vars ConfigMap as the
valuesFrom source.  What manifests/addons configures by hand must come out of the charts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartservers import ChartRepoServer
from helmcharts import ADDON_CHARTS, build_tool, helm, package, write_addon_chart

from reconciler.gitsync.helmrender import HelmInputs, HelmRender, render_helm
from reconciler.gitsync.helmspec import parse_helm
from reconciler.render import tools
from reconciler.render.helm_cache import RenderCache
from reconciler.source.charts import ChartCache
from reconciler.source.charts.resolver import ChartResolver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepoServer]:
    binary = build_tool("helm")
    work = tmp_path_factory.mktemp("addon-charts")
    with pytest.MonkeyPatch.context() as mp, ChartRepoServer(work / "repo") as server:
        mp.setenv(tools.HELM.env, binary)
        for name in ADDON_CHARTS:
            tgz = package(binary, write_addon_chart(work / "src", name), work / "pkg", home=work / "home")
            shutil.copy(tgz, server.root)
        helm(binary, "repo", "index", str(server.root), "--url", server.url, home=work / "home")
        yield server


def render(repo: ChartRepoServer, tmp_path: Path, cluster: str) -> dict[str, HelmRender]:
    cluster_vars = yaml.safe_load((ROOT / "examples/fleet/gitsyncs" / cluster / "cluster-vars.yaml").read_text())
    objects = {("ConfigMap", "cluster-vars"): cluster_vars["data"]}
    resolver, cache = ChartResolver(cache=ChartCache(tmp_path / "charts")), RenderCache()
    out: dict[str, HelmRender] = {}
    for doc in yaml.safe_load_all((ROOT / "examples/fleet/charts/gitsyncs.yaml").read_text()):
        helm_spec = doc["spec"]["helm"]
        helm_spec["chart"]["spec"]["repository"]["url"] = repo.url
        inputs = HelmInputs(
            root=ROOT,
            spec=parse_helm(helm_spec, gitsync_name=doc["metadata"]["name"]),
            namespace=doc["metadata"]["namespace"],
            objects=objects,
            kube_version="v1.34.2",
        )
        out[doc["metadata"]["name"]] = render_helm(inputs, resolver=resolver, cache=cache)
    return out


def deployment(r: HelmRender) -> dict[str, Any]:
    (obj,) = [m.obj for m in r.manifests if m.obj["kind"] == "Deployment"]
    return obj


def container(r: HelmRender) -> dict[str, Any]:
    c: dict[str, Any] = deployment(r)["spec"]["template"]["spec"]["containers"][0]
    return c


@pytest.mark.parametrize(
    ("cluster", "name", "region", "domain"),
    [("dev", "fleet-dev", "eu-west-1", "dev.example.com"), ("prod", "fleet-prod", "eu-central-1", "example.com")],
)
def test_the_addons_render_from_their_chart_references(
    repo: ChartRepoServer, tmp_path: Path, cluster: str, name: str, region: str, domain: str
) -> None:
    r = render(repo, tmp_path, cluster)
    assert {k: v.revision.split("@sha256:")[0] for k, v in r.items()} == {
        "cluster-autoscaler": "cluster-autoscaler@9.59.0",
        "external-dns": "external-dns@1.21.1",
        "metrics-server": "metrics-server@3.13.1",
    }
    ca = r["cluster-autoscaler"]
    assert deployment(ca)["metadata"] == {"name": "cluster-autoscaler", "namespace": "kube-system"}
    assert container(ca)["image"] == "registry.k8s.io/autoscaling/cluster-autoscaler:v1.34.4"
    assert (
        f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/{name}"
        in container(ca)["command"]
    )
    assert {"--expander=least-waste", "--balance-similar-node-groups=true", "--v=4"} <= set(container(ca)["command"])
    assert container(ca)["env"] == [{"name": "AWS_REGION", "value": region}]
    dns = r["external-dns"]
    assert [m.obj["metadata"]["name"] for m in dns.crds] == ["dnsendpoints.externaldns.k8s.io"]
    assert container(dns)["args"] == [
        "--source=service",
        "--source=ingress",
        "--policy=upsert-only",
        "--registry=txt",
        f"--txt-owner-id={name}",
        f"--domain-filter={domain}",
        "--provider=aws",
    ]
    ms = r["metrics-server"]
    assert deployment(ms)["spec"]["template"]["spec"]["priorityClassName"] == "system-cluster-critical"
    manual = yaml.safe_load_all((ROOT / "manifests/addons/metrics-server/deployment.yaml").read_text())
    (by_hand,) = [d for d in manual if d and d["kind"] == "Deployment"]
    assert set(container(ms)["args"]) <= set(by_hand["spec"]["template"]["spec"]["containers"][0]["args"])
