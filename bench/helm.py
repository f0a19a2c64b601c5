"""Benchmark: the Helm render step, cold vs a no-op reconcile (chart cache + render cache hits).

A chart that renders N objects (default 300: ConfigMaps, Services, Deployments from three
templates looping over ``.Values.count``) is packaged with the real Helm and served from an
HTTP Helm repository on loopback (tests/chartservers.py).  In one process:
  1. ``helm template`` of the chart directory, run directly: the floor for a cold render;
  2. cold: ``gitsync.helmrender.render_helm`` with empty caches (index, download, unpack, render);
  3. R no-op reconciles of the same inputs (default 10): the index is re-checked (304), nothing is
     downloaded, ``helm`` does not run;
  4. the same for the chart as a path in the source (no network; its files are hashed each time).
Prints wall time, ``helm`` runs, HTTP requests and archive downloads for each.  Needs no control
plane; the sync side (API writes per reconcile) is measured by bench/sync_1k.py.

    .venv/bin/python bench/helm.py [--objects 300] [--reconciles 10]
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

from reconciler.gitsync.helmrender import HelmInputs, render_helm  # noqa: E402
from reconciler.gitsync.helmspec import parse_helm  # noqa: E402
from reconciler.render import tools  # noqa: E402
from reconciler.render.helm_cache import RenderCache  # noqa: E402
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


def helm_template_floor(binary: str, chart: Path, home: Path) -> None:
    start = time.perf_counter()
    out = helm(binary, "template", "bench", str(chart), "--namespace", "bench", home=home)
    took = time.perf_counter() - start
    print(f"{'helm template (direct)':<28} cold      {took * 1000:8.1f} ms  objects={out.count('kind: ')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--reconciles", type=int, default=10)
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


if __name__ == "__main__":
    main()
