"""`make demo`: apply a folder of manifests with our own server-side apply and show what is live.

Namespaces go first so the objects inside them can be created in the same run; this is
a small preview of the staged apply of ``reconciler sync``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from reconciler.kube import apply, client, discovery
from reconciler.render import manifests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--kubeconfig", required=True)
    a = ap.parse_args()
    try:
        objs = [m.obj for m in manifests.load_path(a.path)]
    except manifests.ManifestError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    kube = client.connect(a.kubeconfig)
    mapper = discovery.RestMapper(kube)
    objs.sort(key=lambda o: 0 if o["kind"] == "Namespace" else 1)
    print(f"applying {len(objs)} objects from {a.path} to {kube.host} (field manager {apply.FIELD_MANAGER})")
    live = []
    for obj in objs:
        try:
            live.append(apply.server_side_apply(kube, mapper, obj))
        except (client.KubeError, discovery.UnknownKindError) as e:
            print(f"demo: {apply.describe(obj)}: {e}", file=sys.stderr)
            return 1
    # Give the deployment controller a moment, then show what it built from our Deployment.
    deadline = time.monotonic() + 20
    rs: list[dict[str, object]] = []
    while time.monotonic() < deadline and not rs:
        rs = kube.get("/apis/apps/v1/namespaces/hello/replicasets")["items"]
        time.sleep(0.5)
    for r in rs:
        r["kind"] = "ReplicaSet"  # list items carry no kind
    print(f"\n{'KIND':<12} {'NAMESPACE':<10} {'NAME':<24} {'RESOURCEVERSION':<16} MANAGERS")
    for o in live + rs:
        md = o["metadata"]  # type: ignore[index]
        managers = ",".join(sorted({f["manager"] for f in md.get("managedFields", [])}))
        print(f"{o['kind']:<12} {md.get('namespace', ''):<10} {md['name']:<24} {md['resourceVersion']:<16} {managers}")
    nodes = kube.get("/api/v1/nodes")["items"]
    for dep in (o for o in live if o["kind"] == "Deployment"):
        md = dep["metadata"]
        path = f"/apis/apps/v1/namespaces/{md['namespace']}/deployments/{md['name']}"
        want = dep["spec"].get("replicas", 1)
        if not nodes:
            print(f"\nDeployment {md['name']}: no Node in this cluster (make cluster KWOK=0), Pods stay Pending")
            continue
        deadline = time.monotonic() + 60
        ready = 0
        while time.monotonic() < deadline and ready < want:
            ready = kube.get(path).get("status", {}).get("availableReplicas", 0)
            time.sleep(0.5)
        print(f"\nDeployment {md['name']}: {ready}/{want} replicas available on {len(nodes)} kwok node(s)")
    print(f"API requests made: {dict(kube.requests)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
