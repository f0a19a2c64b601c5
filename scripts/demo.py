"""`make demo`, second half: show what the sync made live, straight from the API server.

Lists every object that carries the sync's owner label, with its field managers and
health, and the ReplicaSets the deployment controller made from our Deployments.
"""

from __future__ import annotations

import argparse
import sys

from reconciler.kube import client, discovery
from reconciler.sync import health
from reconciler.sync.objects import OWNER_LABEL, owner_label_value

KINDS = [
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--sync", default="default.hello", help="owner label value <namespace>.<name>")
    a = ap.parse_args()
    kube = client.connect(a.kubeconfig)
    mapper = discovery.RestMapper(kube)
    ns_, _, name = a.sync.partition(".")
    owner = owner_label_value(ns_, name)
    print(f"\n{'KIND':<11} {'NAMESPACE':<10} {'NAME':<18} {'MANAGERS':<42} HEALTH")
    for api_version, kind in KINDS:
        res = mapper.find(api_version, kind)
        query = [] if kind == "ReplicaSet" else [("labelSelector", f"{OWNER_LABEL}={owner}")]
        for o in kube.get(res.collection_path(), query=query)["items"]:
            md = o["metadata"]
            if kind == "ReplicaSet" and md.get("namespace") != "hello":
                continue
            o.setdefault("kind", kind)
            o.setdefault("apiVersion", api_version)
            managers = ",".join(sorted({f["manager"] for f in md.get("managedFields", [])}))
            h = health.assess(o)
            print(f"{kind:<11} {md.get('namespace', '-'):<10} {md['name']:<18} {managers:<42} {h.state.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
