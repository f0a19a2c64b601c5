"""Benchmark: 1,000 mixed objects — our sync vs ``kubectl apply --server-side``.

Runs on a fresh local control plane (scripts/controlplane.py) in one process:
  1. initial sync of 1,000 objects (10 Namespaces; per namespace 40 ConfigMaps,
     30 Services, 29 Deployments) with ``reconciler.gitsync.pipeline.sync_revision``;
  2. a no-op re-sync of the same revision;
  3. ``kubectl apply --server-side`` of the same set into other namespaces (initial),
     and once more (its no-op).
Prints wall time and API requests by verb for each. kubectl's requests are counted
from its ``-v=6`` request log.

    .venv/bin/python bench/sync_1k.py [--objects-per-ns 99] [--namespaces 10]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import controlplane  # noqa: E402

from reconciler.gitsync.cluster import KubeCluster  # noqa: E402
from reconciler.gitsync.errors import StepError  # noqa: E402
from reconciler.gitsync.pipeline import Given, sync_revision  # noqa: E402
from reconciler.gitsync.results import SyncOptions  # noqa: E402
from reconciler.kube import client, discovery  # noqa: E402
from reconciler.render import build as render_build  # noqa: E402
from reconciler.source.local import LocalSource  # noqa: E402


def write_objects(root: Path, prefix: str, namespaces: int, per_ns: int) -> int:
    n = 0
    for i in range(namespaces):
        ns = f"{prefix}-{i:02d}"
        docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
        cms, svcs = int(per_ns * 0.4), int(per_ns * 0.3)
        deps = per_ns - cms - svcs
        for j in range(cms):
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{j}", "namespace": ns, "labels": {"app": f"a{j % 7}"}},
                    "data": {"key": f"value-{j}", "config.yaml": f"replicas: {j}\nname: cm-{j}\n"},
                }
            )
        for j in range(svcs):
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": f"svc-{j}", "namespace": ns},
                    "spec": {"selector": {"app": f"a{j}"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
                }
            )
        for j in range(deps):
            docs.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": f"dep-{j}", "namespace": ns},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": f"d{j}"}},
                        "template": {
                            "metadata": {"labels": {"app": f"d{j}"}},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "registry.k8s.io/pause:3.10",
                                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                    }
                                ]
                            },
                        },
                    },
                }
            )
        (root / f"{ns}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        n += len(docs)
    return n


def ours(kubeconfig: str, folder: Path, label: str) -> tuple[float, dict[str, int], dict[str, int]]:
    kube = client.connect(kubeconfig, pool_size=16)
    mapper = discovery.RestMapper(kube)
    t0 = time.perf_counter()
    art = LocalSource(folder).fetch()
    manifests = render_build.render(art.path, ".")
    opts = SyncOptions(name="bench", namespace="default")
    try:
        res = sync_revision(steps=Given(manifests, art.revision), cluster=KubeCluster(kube, mapper, opts), options=opts)
    except StepError as e:
        raise SystemExit(f"{label}: sync failed: {e.errors[:3]}") from e
    dt = time.perf_counter() - t0
    assert res.plan is not None
    reqs = dict(kube.requests)
    kube.close()
    return dt, reqs, res.plan.counts()


def kubectl(kubeconfig: str, folder: Path) -> tuple[float, dict[str, int]]:
    t0 = time.perf_counter()
    p = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", str(folder), "-v=6"],
        capture_output=True,
        text=True,
        check=False,
    )
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"kubectl failed: {p.stderr[-2000:]}")
    verbs = collections.Counter(re.findall(r"\] (GET|POST|PATCH|PUT|DELETE) https://", p.stderr))
    return dt, dict(verbs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--objects-per-ns", type=int, default=99)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "ours").mkdir()
        (t / "kubectl").mkdir()
        n = write_objects(t / "ours", "bench", a.namespaces, a.objects_per_ns)
        write_objects(t / "kubectl", "kctl", a.namespaces, a.objects_per_ns)
        with controlplane.running(t / "cluster", kwok=False) as cp:
            kc = str(cp.kubeconfig)
            rows = []
            dt, reqs, counts = ours(kc, t / "ours", "initial")
            rows.append(("reconciler initial sync", dt, reqs, counts))
            dt, reqs, counts = ours(kc, t / "ours", "no-op")
            rows.append(("reconciler no-op re-sync", dt, reqs, counts))
            dt, reqs = kubectl(kc, t / "kubectl")
            rows.append(("kubectl apply --server-side", dt, reqs, {}))
            dt, reqs = kubectl(kc, t / "kubectl")
            rows.append(("kubectl apply --server-side (again)", dt, reqs, {}))
    print(f"objects: {n}")
    print(f"{'run':<38} {'wall s':>8} {'requests':>9}  by verb / plan")
    for name, dt, reqs, counts in rows:
        total = sum(reqs.values())
        extra = ", ".join(f"{k} {v}" for k, v in sorted(reqs.items()))
        plan = (" | " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)) if counts else ""
        print(f"{name:<38} {dt:>8.2f} {total:>9}  {extra}{plan}")
    speedup = rows[2][1] / rows[0][1]
    print(f"initial apply speed-up vs kubectl: {speedup:.1f}x")
    print(f"no-op re-sync: {sum(rows[1][2].values())} requests for {n} objects, writes: {rows[1][2].get('PATCH', 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
