"""Benchmark: the Helm render step, cold vs a no-op reconcile (chart cache + render cache hits).

A chart that renders N objects (default 300: ConfigMaps, Services, Deployments from three
templates looping over ``.Values.count``) is packaged with the real Helm and served from an
HTTP Helm repository on loopback (tests/chartservers.py).  In one process:
  1. ``helm template`` of the chart directory, run directly: the floor for a cold render;
  2. cold: ``gitsync.helmrender.render_helm`` with empty caches (index, download, unpack, render);
  3. R no-op reconciles of the same inputs (default 10): the index is re-checked (304), nothing is
     downloaded, ``helm`` does not run;
  4. the same for the chart as a path in the source (no network; its files are hashed each time);
  5. with ``--sync``, on a fresh local control plane (scripts/controlplane.py): the chart synced
     through the one pipeline (``sync_revision``, as a GitSync with ``spec.helm`` is), cold, then
     R no-op reconciles; and ``helm upgrade --install`` of the same chart into another namespace,
     initial and again (its no-op).
Prints wall time, ``helm`` runs, HTTP requests and archive downloads for each, and for the sync
the API requests per reconcile and how many of them write.

    .venv/bin/python bench/helm.py [--objects 300] [--reconciles 10] [--sync]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chartservers import ChartRepoServer  # noqa: E402
from helmcharts import build_tool, helm, package  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import controlplane  # noqa: E402

from reconciler.gitsync.cluster import KubeCluster  # noqa: E402
from reconciler.gitsync.helmrender import HelmInputs, render_helm  # noqa: E402
from reconciler.gitsync.helmspec import parse_helm  # noqa: E402
from reconciler.gitsync.pipeline import sync_revision  # noqa: E402
from reconciler.gitsync.rendered import Rendered  # noqa: E402
from reconciler.gitsync.results import SyncOptions  # noqa: E402
from reconciler.kube import client, discovery  # noqa: E402
from reconciler.render import tools  # noqa: E402
from reconciler.render.helm_cache import RenderCache  # noqa: E402
from reconciler.source.artifact import Artifact  # noqa: E402
from reconciler.source.charts import ChartCache  # noqa: E402
from reconciler.source.charts.resolver import ChartResolver  # noqa: E402

TEMPLATES = {
    "configmap.yaml": (
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: ConfigMap\n"
        'metadata: {name: cm-{{ $i }}}\ndata: {index: "{{ $i }}", greeting: {{ $.Values.greeting | quote }}}\n'
        "{{- end }}\n"
    ),
    "service.yaml": (
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: v1\nkind: Service\n"
        "metadata: {name: svc-{{ $i }}}\nspec: {selector: {app: app-{{ $i }}}, ports: [{port: 80, name: http}]}\n"
        "{{- end }}\n"
    ),
    "deployment.yaml": (
        "{{- range $i := until (int .Values.count) }}\n---\napiVersion: apps/v1\nkind: Deployment\n"
        "metadata: {name: app-{{ $i }}}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app-{{ $i }}}}\n"
        "  template:\n    metadata: {labels: {app: app-{{ $i }}}}\n"
        '    spec: {containers: [{name: main, image: "registry.example/app:1"}]}\n'
        "{{- end }}\n"
    ),
}


def write_chart(parent: Path, *, objects: int) -> Path:
    chart = parent / "bench"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 1.0.0\n")
    (chart / "values.yaml").write_text(f"count: {objects // 3}\ngreeting: hello\n")
    for name, text in TEMPLATES.items():
        (chart / "templates" / name).write_text(text)
    return chart


class Run:
    """One resolver and render cache, as one controller process keeps them."""

    def __init__(self, work: Path, spec: dict[str, Any], root: Path) -> None:
        self.resolver = ChartResolver(cache=ChartCache(work / "chart-cache"))
        self.cache = RenderCache()
        self.inputs = HelmInputs(
            root=root,
            spec=parse_helm(spec, gitsync_name="bench"),
            namespace="bench",
            kube_version="v1.35.4",
            api_versions=("v1", "apps/v1"),
        )

    def once(self) -> tuple[float, int]:
        start = time.perf_counter()
        r = render_helm(self.inputs, resolver=self.resolver, cache=self.cache)
        return time.perf_counter() - start, len(r.manifests)


def measure(label: str, run: Run, *, reconciles: int, repo: ChartRepoServer | None) -> None:
    requests0 = run.resolver.requests
    cold, count = run.once()
    cold_requests = run.resolver.requests - requests0
    downloads = repo.downloads() if repo else 0
    print(
        f"{label:<28} cold      {cold * 1000:8.1f} ms  objects={count} helm runs={run.cache.renders} "
        f"HTTP requests={cold_requests} downloads={downloads}"
    )
    times = [run.once()[0] for _ in range(reconciles)]
    requests = (run.resolver.requests - requests0 - cold_requests) / reconciles
    extra = (repo.downloads() - downloads) if repo else 0
    print(
        f"{label:<28} no-op x{reconciles:<2} {statistics.median(times) * 1000:8.1f} ms median "
        f"(max {max(times) * 1000:.1f})  helm runs={run.cache.renders - 1} "
        f"HTTP requests/reconcile={requests:.0f} downloads={extra}"
    )


class ChartSteps:
    """The pipeline's steps for the benchmark's chart: rendered through the run's caches, no policies."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def fetch(self) -> Artifact:
        return Artifact(revision="bench@sha1:" + "0" * 40, path=self.run.inputs.root)

    def render(self, artifact: Artifact) -> Rendered | None:
        r = render_helm(self.run.inputs, resolver=self.run.resolver, cache=self.run.cache)
        return Rendered(manifests=r.manifests, chart=r)

    def policies(self) -> None:
        return None

    def hold(self, revision: str) -> bool:
        return False

    def report(self, violations: Any) -> None:
        return None


WRITES = ("POST", "PATCH", "PUT", "DELETE")


def sync_rows(run: Run, kubeconfig: str, *, reconciles: int) -> None:
    kube = client.connect(kubeconfig, pool_size=16)
    mapper = discovery.RestMapper(kube)
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "bench"}})
    opts = SyncOptions(name="bench", namespace="bench", default_namespace="bench")
    cluster = KubeCluster(kube, mapper, opts)
    times, requests, writes = [], [], []
    for _ in range(reconciles + 1):
        before = dict(kube.requests)
        start = time.perf_counter()
        res = sync_revision(steps=ChartSteps(run), cluster=cluster, options=opts)
        times.append(time.perf_counter() - start)
        delta = {k: v - before.get(k, 0) for k, v in kube.requests.items()}
        requests.append(sum(delta.values()))
        writes.append(sum(delta.get(v, 0) for v in WRITES))
        assert res.plan is not None
    print(
        f"{'sync (pipeline)':<28} cold      {times[0] * 1000:8.1f} ms  API requests={requests[0]} "
        f"writes={writes[0]} helm runs=1"
    )
    print(
        f"{'sync (pipeline)':<28} no-op x{reconciles:<2} {statistics.median(times[1:]) * 1000:8.1f} ms median  "
        f"API requests/reconcile={statistics.median(requests[1:]):.0f} writes={sum(writes[1:])} "
        f"helm runs={run.cache.renders - 1}"
    )
    kube.close()


def helm_upgrade(binary: str, chart: Path, home: Path, kubeconfig: str) -> None:
    args = ["upgrade", "--install", "bench", str(chart), "--namespace", "helm-bench", "--create-namespace"]
    for label in ("cold", "again"):
        start = time.perf_counter()
        helm(binary, *args, "--kubeconfig", kubeconfig, home=home)
        took = time.perf_counter() - start
        print(f"{'helm upgrade --install':<28} {label:<9} {took * 1000:8.1f} ms")


def helm_template_floor(binary: str, chart: Path, home: Path) -> None:
    start = time.perf_counter()
    out = helm(binary, "template", "bench", str(chart), "--namespace", "bench", home=home)
    took = time.perf_counter() - start
    print(f"{'helm template (direct)':<28} cold      {took * 1000:8.1f} ms  objects={out.count('kind: ')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--reconciles", type=int, default=10)
    parser.add_argument("--sync", action="store_true", help="also sync into a fresh local control plane")
    args = parser.parse_args()
    binary = build_tool("helm")
    with tempfile.TemporaryDirectory(prefix="bench-helm-") as tmp:
        work = Path(tmp)
        chart = write_chart(work / "source" / "charts", objects=args.objects)
        home = work / "home"
        helm_template_floor(binary, chart, home)
        tgz = package(binary, chart, work / "pkg", home=home)
        os.environ[tools.HELM.env] = binary  # render_helm finds this exact binary
        with ChartRepoServer(work / "repo") as repo:
            shutil.copy(tgz, repo.root)
            helm(binary, "repo", "index", str(repo.root), "--url", repo.url, home=home)
            spec = {"chart": {"spec": {"chart": "bench", "version": "^1", "repository": {"url": repo.url}}}}
            measure("HTTP repository", Run(work / "a", spec, work), reconciles=args.reconciles, repo=repo)
        spec = {"chart": {"spec": {"chart": "charts/bench"}}}
        measure("chart in the source", Run(work / "b", spec, work / "source"), reconciles=args.reconciles, repo=None)
        if args.sync:
            with controlplane.running(work / "cluster", kwok=False) as cp:
                sync_rows(Run(work / "c", spec, work / "source"), str(cp.kubeconfig), reconciles=args.reconciles)
                helm_upgrade(binary, chart, home, str(cp.kubeconfig))


if __name__ == "__main__":
    main()
