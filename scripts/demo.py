"""`make demo`: the product on the local control plane, end to end.

1. makes a git repository from examples/hello, serves it over http on 127.0.0.1 (`git
   http-backend`: `reconciler run` refuses file:// URLs) and installs the GitSync CRD (deploy/);
2. starts `reconciler run` against it and creates a GitSync;
3. prints the GitSync status once it is Ready;
4. commits a change and shows it deployed;
5. edits a managed object by hand and shows the drift detected and corrected.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from reconciler.kube import client, discovery, ssa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/gitserver.py: the http git server the tests use too

import gitserver  # noqa: E402

GS = "/apis/gitops.reconciler.dev/v1/namespaces/default/gitsyncs"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.com", *args],
        cwd=repo,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def wait(what: str, fn: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise SystemExit(f"demo: timed out waiting for {what}")


def status_line(obj: dict[str, Any]) -> str:
    st = obj.get("status") or {}
    ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), {})
    return (
        f"GitSync default/{obj['metadata']['name']}: Ready={ready.get('status')} "
        f"revision={st.get('lastAppliedRevision')} drift={(st.get('drift') or {}).get('objects', 0)}\n"
        f"  message: {ready.get('message')}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    a = ap.parse_args()
    kube = client.connect(a.kubeconfig)
    mapper = discovery.RestMapper(kube)
    for doc in yaml.safe_load_all((ROOT / "deploy" / "crd-gitsync.yaml").read_text()):
        ssa.apply(kube, doc, mapper=mapper, field_manager="demo-setup")
    wait("the GitSync CRD", lambda: _established(kube))

    tmp = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    bare, work = tmp / "fleet.git", tmp / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, stderr=subprocess.DEVNULL)
    shutil.copytree(ROOT / "examples" / "hello", work / "hello")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "hello: first version")
    git(work, "push", "-q", "origin", "main")
    server = gitserver.HTTPGitServer(project_root=tmp).start()
    url = server.url_for(bare)
    print(f"== git repository {url} made from examples/hello")

    log = (tmp / "controller.log").open("wb")
    ctl = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "run",
            "--kubeconfig",
            a.kubeconfig,
            "--metrics-addr",
            "127.0.0.1:0",
            "--health-addr",
            "",
            "--cache-dir",
            str(tmp / "cache"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "POD_NAME": "demo"},
    )
    try:
        if kube.get_or_none(f"{GS}/hello"):
            kube.request("DELETE", f"{GS}/hello")
            wait("the previous demo GitSync to go", lambda: kube.get_or_none(f"{GS}/hello") is None)
        kube.request(
            "POST",
            GS,
            body={
                "apiVersion": "gitops.reconciler.dev/v1",
                "kind": "GitSync",
                "metadata": {"name": "hello"},
                "spec": {
                    "source": {"git": {"url": url, "ref": {"branch": "main"}}},
                    "path": "./hello",
                    "interval": "5s",
                    "drift": {"mode": "correct"},
                },
            },
        )
        print("== reconciler run started; GitSync default/hello created")
        obj = wait("the GitSync to become Ready", lambda: _ready(kube, ""))
        print(status_line(obj))

        cfg = work / "hello" / "app.yaml"
        cfg.write_text(cfg.read_text().replace('GREETING: "Hello from git"', 'GREETING: "Hello again, from a commit"'))
        git(work, "commit", "-qam", "hello: new greeting")
        git(work, "push", "-q", "origin", "main")
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True, text=True)
        print(f"\n== committed and pushed {sha.stdout.strip()[:12]}: new GREETING")
        obj = wait("the commit to be deployed", lambda: _ready(kube, sha.stdout.strip()))
        live = kube.get("/api/v1/namespaces/hello/configmaps/hello-config")["data"]["GREETING"]
        print(status_line(obj))
        print(f"  live ConfigMap hello/hello-config GREETING = {live!r}")

        print("\n== kubectl scale deploy/hello --replicas=5 (a hand edit of a field git owns)")
        kube.request(
            "PATCH",
            "/apis/apps/v1/namespaces/hello/deployments/hello/scale",
            query=[("fieldManager", "kubectl-scale")],
            body={"spec": {"replicas": 5}},
            content_type="application/merge-patch+json",
        )
        t0 = time.monotonic()
        ev = wait("a DriftDetected Event", lambda: _event(kube, "DriftDetected"), 10)
        print(f"  Event {ev['reason']} after {time.monotonic() - t0:.1f}s: {ev['note']}")
        wait("the drift to be corrected", lambda: _replicas(kube) == 2, 10)
        ev = wait("a DriftCorrected Event", lambda: _event(kube, "DriftCorrected"), 10)
        print(f"  Event {ev['reason']} after {time.monotonic() - t0:.1f}s: {ev['note']}")
        print(f"  live replicas = {_replicas(kube)} (git says 2)")
        print(f"\ncontroller log: {tmp / 'controller.log'}; the cluster keeps running (make cluster-down)")
    finally:
        ctl.terminate()
        ctl.wait(15)
        server.stop()
    return 0


def _established(kube: client.Kube) -> bool:
    crd = kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gitsyncs.gitops.reconciler.dev")
    return any(
        c["type"] == "Established" and c["status"] == "True" for c in crd.get("status", {}).get("conditions") or []
    )


def _ready(kube: client.Kube, sha: str) -> dict[str, Any] | None:
    obj = kube.get_or_none(f"{GS}/hello")
    st = (obj or {}).get("status") or {}
    ok = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
    return obj if ok and sha in str(st.get("lastAppliedRevision", "")) else None


def _event(kube: client.Kube, reason: str) -> dict[str, Any] | None:
    uid = (kube.get_or_none(f"{GS}/hello") or {}).get("metadata", {}).get("uid")
    items = kube.get("/apis/events.k8s.io/v1/namespaces/default/events")["items"]
    hits = [e for e in items if e["reason"] == reason and e["regarding"].get("uid") == uid]
    return hits[-1] if hits else None


def _replicas(kube: client.Kube) -> int:
    return int(kube.get("/apis/apps/v1/namespaces/hello/deployments/hello")["spec"]["replicas"])


if __name__ == "__main__":
    sys.exit(main())
