"""Benchmark: the default policy set over 5,000 rendered objects, offline.

Prints the time to load and compile policies/ and the evaluation rate in objects per
second (target: at least 2,000/s on the 2-core development machine), next to the rate of
rendering the same objects from YAML in the same process, as a yardstick.

    .venv/bin/python bench/policy.py [--objects 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reconciler import policy  # noqa: E402
from reconciler.render import build  # noqa: E402


def objects(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        ns = f"team-{i % 20}"
        kind = i % 4
        if kind == 0:
            out.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": f"web-{i}", "namespace": ns, "labels": {"app.kubernetes.io/name": f"web-{i}"}},
                    "spec": {
                        "selector": {"matchLabels": {"app": f"web-{i}"}},
                        "template": {
                            "metadata": {"labels": {"app": f"web-{i}", "app.kubernetes.io/name": f"web-{i}"}},
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        # every tenth Deployment breaks image-tags, so messages are built too
                                        "image": "registry.k8s.io/pause:latest"
                                        if i % 40 == 0
                                        else "registry.k8s.io/pause:3.10",
                                        "resources": {
                                            "requests": {"cpu": "10m", "memory": "16Mi"},
                                            "limits": {"cpu": "100m", "memory": "64Mi"},
                                        },
                                    }
                                ]
                            },
                        },
                    },
                }
            )
        elif kind == 1:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cm-{i}", "namespace": ns},
                    "data": {"k": "v"},
                }
            )
        elif kind == 2:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": f"svc-{i}", "namespace": ns},
                    "spec": {"selector": {"app": f"web-{i}"}, "ports": [{"port": 80}]},
                }
            )
        else:
            out.append(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": f"rb-{i}", "namespace": ns},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                    "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
                }
            )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=5000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "all.yaml").write_text(yaml.safe_dump_all(objects(a.objects)))
        t0 = time.perf_counter()
        manifests = build.render(Path(tmp), ".")
        render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ps = policy.load_policies(ROOT / "policies")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    violations = policy.evaluate(manifests, ps)
    eval_s = time.perf_counter() - t0
    print(f"objects: {len(manifests)}; policies loaded and compiled in {load_s * 1000:.0f} ms")
    print(f"evaluation: {eval_s:.2f}s = {len(manifests) / eval_s:,.0f} objects/s (target >= 2,000/s)")
    print(f"yardstick: rendering the same objects from YAML: {len(manifests) / render_s:,.0f} objects/s")
    print(f"violations: {len(violations)} ({sum(v.action == 'Deny' for v in violations)} Deny)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
