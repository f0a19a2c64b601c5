"""Benchmark: drift-detection and webhook latency, and the controller's memory at 5,000 objects.

On a fresh local control plane, one `reconciler run` process manages 10 GitSyncs of 500
ConfigMaps each (5,000 objects). Then:
  (a) 50 out-of-band edits of a managed object -> time until the controller logs DriftDetected;
  (b) 50 signed webhook pushes of a commit changing one object -> time until it is live
      (every push wakes all 10 GitSyncs, which follow the same repository);
  baseline: the same commit without a webhook, found by polling at a 10 s interval (5 trials).
Prints p50/p95 of each and the controller's RSS (VmRSS) once everything is synced.

    .venv/bin/python bench/latency.py [--gitsyncs 10] [--objects 500] [--trials 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import controlplane  # noqa: E402
from controllers import free_port  # noqa: E402

from reconciler.kube import client, discovery, ssa  # noqa: E402

SECRET = "bench-webhook-secret-0123456789"  # noqa: S105 - a throw-away secret for loopback
GS = "/apis/gitops.reconciler.dev/v1/namespaces/bench/gitsyncs"


def git(repo: Path, *args: str) -> str:
    r = subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return r.stdout.strip()


def cms(i: int, n: int, value: str, last: str | None = None) -> str:
    """n ConfigMaps; ``last`` (if given) is the value of only the last one: a one-object commit."""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"g{i}-cm-{j}", "namespace": "bench"},
            "data": {"v": last if last is not None and j == n - 1 else value},
        }
        for j in range(n)
    ]
    return yaml.safe_dump_all(docs)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gitsyncs", type=int, default=10)
    ap.add_argument("--objects", type=int, default=500)
    ap.add_argument("--trials", type=int, default=50)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        bare, work = tmp / "fleet.git", tmp / "work"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
        for i in range(a.gitsyncs):
            (work / f"g{i}").mkdir()
            (work / f"g{i}" / "cms.yaml").write_text(cms(i, a.objects, "0"))
        git(work, "add", "-A")
        git(work, "commit", "-qm", "fleet")
        git(work, "push", "-q", "origin", "main")

        with controlplane.running(tmp / "cluster", kwok=False) as cp:
            kube = client.connect(str(cp.kubeconfig))
            mapper = discovery.RestMapper(kube)
            for doc in yaml.safe_load_all((ROOT / "deploy" / "crd-gitsync.yaml").read_text()):
                ssa.apply(kube, doc, mapper=mapper, field_manager="bench")
            kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "bench"}})
            time.sleep(2)
            (tmp / "secret").write_text(SECRET)
            hook = free_port()
            log = tmp / "controller.log"
            ctl = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reconciler",
                    "run",
                    "--kubeconfig",
                    str(cp.kubeconfig),
                    "--metrics-addr",
                    "",
                    "--health-addr",
                    "",
                    "--webhook-addr",
                    f"127.0.0.1:{hook}",
                    "--webhook-secret-file",
                    str(tmp / "secret"),
                    "--cache-dir",
                    str(tmp / "cache"),
                    "--workers",
                    "4",
                ],
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            try:
                t0 = time.monotonic()
                for i in range(a.gitsyncs):
                    kube.request(
                        "POST",
                        GS,
                        body={
                            "apiVersion": "gitops.reconciler.dev/v1",
                            "kind": "GitSync",
                            "metadata": {"name": f"g{i}"},
                            "spec": {
                                "source": {"git": {"url": f"file://{bare}", "ref": {"branch": "main"}}},
                                "path": f"g{i}",
                                "interval": "1h",
                            },
                        },
                    )

                def all_ready() -> bool:
                    items = kube.get(GS)["items"]
                    return len(items) == a.gitsyncs and all(
                        any(
                            c["type"] == "Ready" and c["status"] == "True"
                            for c in (o.get("status") or {}).get("conditions", [])
                        )
                        for o in items
                    )

                wait(all_ready, 600, "all GitSyncs Ready")
                initial = time.monotonic() - t0
                time.sleep(3)
                rss = rss_mib(ctl.pid)

                # (a) drift detection
                drift: list[float] = []
                for t in range(a.trials):
                    i, j = random.randrange(a.gitsyncs), random.randrange(a.objects)  # noqa: S311
                    before = log.read_text().count('"reason": "DriftDetected"')
                    start = dt.datetime.now(dt.UTC)
                    kube.request(
                        "PATCH",
                        f"/api/v1/namespaces/bench/configmaps/g{i}-cm-{j}",
                        query=[("fieldManager", "kubectl-edit")],
                        body={"data": {"v": f"edited-{t}"}},
                        content_type="application/merge-patch+json",
                    )
                    wait(lambda b=before: log.read_text().count('"reason": "DriftDetected"') > b, 30, "DriftDetected")
                    line = [ln for ln in log.read_text().splitlines() if '"reason": "DriftDetected"' in ln][-1]
                    ts = dt.datetime.strptime(json.loads(line)["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
                    drift.append((ts - start).total_seconds())
                    wait(
                        lambda i=i, j=j, t=t: (
                            kube.get(f"/api/v1/namespaces/bench/configmaps/g{i}-cm-{j}")["data"]["v"] != f"edited-{t}"
                        ),
                        30,
                        "correction",
                    )

                # (b) webhook push -> live
                def push(value: str, i: int) -> None:
                    # a commit that changes one object of one GitSync (all 10 follow the repository)
                    (work / f"g{i}" / "cms.yaml").write_text(cms(i, a.objects, "0", last=value))
                    git(work, "commit", "-qam", value)
                    git(work, "push", "-q", "origin", "main")

                hooked: list[float] = []
                for t in range(a.trials):
                    i = t % a.gitsyncs
                    push(f"hook-{t}", i)
                    body = json.dumps(
                        {"ref": "refs/heads/main", "repository": {"clone_url": f"file://{bare}"}}
                    ).encode()
                    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                    start_m = time.monotonic()
                    req = urllib.request.Request(
                        f"http://127.0.0.1:{hook}/hook/github",
                        data=body,
                        headers={
                            "X-Hub-Signature-256": sig,
                            "X-GitHub-Event": "push",
                            "Content-Type": "application/json",
                        },
                    )
                    urllib.request.urlopen(req, timeout=5).read()  # noqa: S310
                    path = f"/api/v1/namespaces/bench/configmaps/g{i}-cm-{a.objects - 1}"
                    wait(lambda p=path, v=f"hook-{t}": kube.get(p)["data"]["v"] == v, 60, "webhook change live")
                    hooked.append(time.monotonic() - start_m)
                    time.sleep(0.2)

                # baseline: the same kind of commit, found by polling at a 10 s interval
                for i in range(a.gitsyncs):
                    kube.request(
                        "PATCH",
                        f"{GS}/g{i}",
                        body={"spec": {"interval": "10s"}},
                        content_type="application/merge-patch+json",
                    )
                time.sleep(12)
                polled: list[float] = []
                for t in range(5):
                    i = t % a.gitsyncs
                    push(f"poll-{t}", i)
                    start_m = time.monotonic()
                    path = f"/api/v1/namespaces/bench/configmaps/g{i}-cm-{a.objects - 1}"
                    wait(lambda p=path, v=f"poll-{t}": kube.get(p)["data"]["v"] == v, 60, "polled change live")
                    polled.append(time.monotonic() - start_m)
                rss_end = rss_mib(ctl.pid)
            except SystemExit:
                print("controller log tail:\n" + "\n".join(log.read_text().splitlines()[-15:]))
                raise
            finally:
                ctl.terminate()
                ctl.wait(20)
    n = a.gitsyncs * a.objects
    print(f"objects managed: {n} in {a.gitsyncs} GitSyncs; initial sync of all: {initial:.1f}s")
    print(f"controller RSS after initial sync: {rss:.0f} MiB; at the end: {rss_end:.0f} MiB (target < 200 MiB)")
    p50, p95 = statistics.median(drift), pct(drift, 95)
    print(f"(a) edit -> DriftDetected over {len(drift)} trials: p50 {p50:.3f}s  p95 {p95:.3f}s")
    p50, p95 = statistics.median(hooked), pct(hooked, 95)
    print(f"(b) webhook -> live over {len(hooked)} trials:     p50 {p50:.3f}s  p95 {p95:.3f}s")
    p50 = statistics.median(polled)
    print(f"baseline: commit -> live by polling (interval 10s), {len(polled)} trials: p50 {p50:.3f}s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
