"""bench/mttp.py --replicas 1,2,3: the MTTP phases for each replica count, and a responsiveness probe.

For each replica count R, in the same invocation and on the same control plane: fresh namespaces
(the GitSyncs in ``mttp-r<R>``, what they apply in ``mttp-r<R>-apps`` through
``spec.targetNamespace``), R ``reconciler run --shards S`` processes (S = ``--shards``, the same
for every R so only the replica count changes), then mttp.py's two phases: N GitSyncs created,
then one commit that changes every app, announced by the push webhook. Printed per phase: time
until all N are Ready at the revision, each replica's CPU seconds, API requests by verb (summed
over the replicas); per round each replica's peak RSS.

The probe (issue 15, acceptance 3) runs in a thread through each round: every second it asks
every replica for ``/healthz``, ``/metrics`` and a push webhook (signed, for a repository no
GitSync follows, so it costs a LIST and starts no reconcile) and prints p50/p99/max latency and
failures per endpoint: a controller busy with a fleet must still answer its probes and hooks.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import controlplane
import gitserver
import mttp

from reconciler.kube import client

PROBE_HOOK = {"url": "http://127.0.0.1:9/nobody-follows-this.git", "branch": "main"}


@dataclass
class Replica:
    proc: mttp.Proc
    health_port: int
    name: str


def start_replica(*, kubeconfig: Path, tmp: Path, name: str, ns: str, args: argparse.Namespace) -> Replica:
    """One ``reconciler run --shards`` watching ``ns``, its Leases there too (own cache and ports)."""
    metrics, health, hook = (controlplane.free_port() for _ in range(3))
    secret = tmp / "webhook-secret"
    secret.write_text(mttp.SECRET.decode())
    log = tmp / f"{name}.log"
    argv = [sys.executable, "-m", "reconciler", "run", "--kubeconfig", str(kubeconfig), "--workers", str(args.workers)]
    argv += ["--metrics-addr", f"127.0.0.1:{metrics}", "--health-addr", f"127.0.0.1:{health}"]
    argv += ["--webhook-addr", f"127.0.0.1:{hook}", "--webhook-secret-file", str(secret)]
    argv += ["--watch-namespace", ns, "--shards", str(args.shards), "--lease-namespace", ns]
    argv += ["--cache-dir", str(tmp / f"cache-{name}"), "--log-level", "WARNING", *args.controller_arg]
    env = {**os.environ, "POD_NAME": name}
    popen = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=mttp.ROOT, env=env)
    proc = mttp.Proc(popen, metrics, hook, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SystemExit(f"replica {name} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            proc.requests()
            return Replica(proc, health, name)
        time.sleep(0.2)
    raise SystemExit(f"replica {name} did not serve /metrics within 60s")


def held(rep: Replica) -> int:
    """reconciler_shards_held of a replica (-1 if unreadable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{rep.proc.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith("reconciler_shards_held "):
            return int(float(line.split()[1]))
    return -1


@dataclass
class Probe:
    """Latencies (seconds) and failures per endpoint, sampled every second in a thread."""

    reps: list[Replica]
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def _one(self, what: str, req: urllib.request.Request) -> None:
        t = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
                r.read()
            self.latencies.setdefault(what, []).append(time.monotonic() - t)
        except OSError:
            self.failures[what] = self.failures.get(what, 0) + 1
            self.latencies.setdefault(what, []).append(time.monotonic() - t)

    def run(self) -> None:
        body = json.dumps(PROBE_HOOK).encode()
        sig = "sha256=" + hmac.new(mttp.SECRET, body, hashlib.sha256).hexdigest()
        while not self.stop.wait(1.0):
            for rep in self.reps:
                self._one("healthz", urllib.request.Request(f"http://127.0.0.1:{rep.health_port}/healthz"))
                self._one("metrics", urllib.request.Request(f"http://127.0.0.1:{rep.proc.metrics_port}/metrics"))
                url = f"http://127.0.0.1:{rep.proc.webhook_port}/hook/generic"
                self._one("webhook", urllib.request.Request(url, data=body, headers={"X-Signature": sig}))

    @contextlib.contextmanager
    def running(self) -> Iterator[Probe]:
        thread = threading.Thread(target=self.run, name="probe", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(15)

    def lines(self) -> list[str]:
        out = []
        for what, xs in sorted(self.latencies.items()):
            q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) >= 2 else xs * 99
            out.append(
                f"  probe {what:<8} n={len(xs):<4} p50 {q[49] * 1000:7.1f} ms  p99 {q[98] * 1000:7.1f} ms  "
                f"max {max(xs) * 1000:7.1f} ms  failures {self.failures.get(what, 0)}"
            )
        return out


@dataclass
class Round:
    replicas: int
    phases: list[dict[str, Any]] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    probe: list[str] = field(default_factory=list)


def _snapshot(reps: list[Replica]) -> tuple[float, list[tuple[float, float]], dict[str, float]]:
    """(monotonic time, (own, children's) CPU seconds of each replica, API requests by verb summed)."""
    reqs: dict[str, float] = {}
    for r in reps:
        for verb, v in r.proc.requests().items():
            reqs[verb] = reqs.get(verb, 0.0) + v
    return time.monotonic(), [r.proc.cpu() for r in reps], reqs


Snapshot = tuple[float, list[tuple[float, float]], dict[str, float]]


def _phase(
    *, name: str, reps: list[Replica], kube: client.Kube, ns: str, n: int, sha: str, since: Snapshot
) -> dict[str, Any]:
    """Wait until all ``n`` GitSyncs of ``ns`` are Ready at ``sha``; the figures since ``since``."""
    t0, cpu0, req0 = since
    ready = 0
    while time.monotonic() - t0 < 1800:
        for r in reps:
            r.proc.rss_peak()
        ready = _ready(kube, ns, sha)
        if ready >= n:
            break
        time.sleep(0.5)
    t1, cpu1, req1 = _snapshot(reps)
    return {
        "name": name,
        "ready": ready,
        "seconds": t1 - t0,
        "cpu": [c1[0] - c0[0] + c1[1] - c0[1] for c0, c1 in zip(cpu0, cpu1, strict=True)],
        "requests": {k: v - req0.get(k, 0.0) for k, v in req1.items() if v - req0.get(k, 0.0)},
    }


def _ready(kube: client.Kube, ns: str, sha: str) -> int:
    items = kube.get(f"{mttp.GS}/namespaces/{ns}/gitsyncs")["items"]
    count = 0
    for o in items:
        st = o.get("status") or {}
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
        count += ok and str(st.get("lastAppliedRevision", "")).endswith(sha)
    return count


def _create(*, kube: client.Kube, ns: str, n: int, url: str, args: argparse.Namespace) -> None:
    for i in range(n):
        spec = {
            "source": {"git": {"url": url, "ref": {"branch": "main"}}},
            "path": f"./apps/app-{i}",
            "interval": args.interval,
            "retryInterval": "10s",
            "prune": True,
            "wait": args.wait,
            "targetNamespace": f"{ns}-apps",
        }
        body = {"apiVersion": "gitops.reconciler.dev/v1", "kind": "GitSync", "metadata": {"name": f"app-{i}"}}
        kube.request("POST", f"{mttp.GS}/namespaces/{ns}/gitsyncs", body={**body, "spec": spec})


def _push_hook(rep: Replica, url: str) -> float:
    """The push webhook that announces the commit (all N GitSyncs follow it); its answer time."""
    body = json.dumps({"url": url, "branch": "main"}).encode()
    sig = "sha256=" + hmac.new(mttp.SECRET, body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"http://127.0.0.1:{rep.proc.webhook_port}/hook/generic", data=body, headers={"X-Signature": sig}
    )
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=300) as r:  # noqa: S310 - loopback
        r.read()
    return time.monotonic() - t


def one_round(*, count: int, kube: client.Kube, kubeconfig: Path, tmp: Path, url: str, repo: Any) -> Round:
    """The two MTTP phases with ``count`` replicas, on fresh namespaces."""
    args, work = repo["args"], repo["work"]
    ns = f"mttp-r{count}"
    for name in (ns, f"{ns}-apps"):
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    reps = [start_replica(kubeconfig=kubeconfig, tmp=tmp, name=f"r{count}-{i}", ns=ns, args=args) for i in range(count)]
    rnd = Round(count)
    try:
        deadline = time.monotonic() + 120
        while sum(max(0, held(r)) for r in reps) < args.shards and time.monotonic() < deadline:
            time.sleep(0.5)
        probe = Probe(reps)
        with probe.running():
            sha = mttp.git("rev-parse", "HEAD", cwd=work)
            since = _snapshot(reps)
            _create(kube=kube, ns=ns, n=args.n, url=url, args=args)
            rnd.phases.append(_phase(name="create", reps=reps, kube=kube, ns=ns, n=args.n, sha=sha, since=since))
            repo["generation"] += 1
            sha = mttp.commit_fleet(work=work, n=args.n, generation=repo["generation"])
            since = _snapshot(reps)
            mttp.push(work)
            hook = _push_hook(reps[0], url)
            rnd.phases.append(_phase(name="push", reps=reps, kube=kube, ns=ns, n=args.n, sha=sha, since=since))
            rnd.phases[-1]["hook"] = hook
        rnd.probe = probe.lines()
    finally:
        for r in reps:
            r.proc.rss_peak()
            r.proc.popen.terminate()
        for r in reps:
            r.proc.popen.wait(60)
    rnd.rss = [r.proc.peak_rss for r in reps]
    return rnd


def print_round(rnd: Round, args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    print(f"replicas={rnd.replicas} shards={args.shards} N={args.n} workers={args.workers} each (load1 {load:.1f})")
    for p in rnd.phases:
        cpu = " ".join(f"{c:.1f}" for c in p["cpu"])
        reqs = ", ".join(f"{k} {int(v)}" for k, v in sorted(p["requests"].items()))
        print(
            f"  {p['name']:<7} ready {p['ready']}/{args.n} in {p['seconds']:.1f} s; CPU s per replica [{cpu}] "
            f"(sum {sum(p['cpu']):.1f}); requests {int(sum(p['requests'].values()))} ({reqs})"
        )
        if "hook" in p:
            print(f"          the push webhook (annotates all {args.n}) answered in {p['hook']:.2f} s")
    print("  peak RSS per replica: " + ", ".join(f"{r / 2**20:.0f} MiB" for r in rnd.rss))
    for line in rnd.probe:
        print(line)


def run(args: argparse.Namespace, tmp: Path) -> int:
    """Every replica count of ``--replicas`` on one control plane and one repository."""
    bare, work = mttp.make_repo(tmp)
    mttp.commit_fleet(work=work, n=args.n, generation=1)
    mttp.push(work)
    rounds = []
    with gitserver.HTTPGitServer() as gitd, controlplane.running(tmp / "cluster", kwok=False) as cp:
        url = gitd.url_for(bare)
        kube = client.connect(str(cp.kubeconfig), pool_size=16)
        mttp.setup_cluster(kube)
        repo = {"args": args, "work": work, "generation": 1}
        for count in args.replicas:
            rnd = one_round(count=count, kube=kube, kubeconfig=cp.kubeconfig, tmp=tmp, url=url, repo=repo)
            print_round(rnd, args)
            sys.stdout.flush()
            rounds.append(rnd)
    return 0 if all(p["ready"] == args.n for r in rounds for p in r.phases) else 1


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--replicas",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[],
        help="run the phases once per replica count, e.g. 1,2,3 (each `run --shards`), with the probe",
    )
    ap.add_argument("--shards", type=int, default=6, help="--shards of every replica with --replicas [6]")
