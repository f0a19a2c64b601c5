"""Benchmark: 1,000 mixed objects — our sync engine vs fluxcd/pkg/ssa vs a raw SSA PATCH loop.

One run, one local control plane (scripts/controlplane.py), three appliers, each on its own
fresh Namespaces so none benefits from another's objects:

  ours       ``reconciler.gitsync.pipeline.sync_revision`` in this process (plan, dry run,
             staged apply, inventory), one long-lived connection and REST mapper;
  flux-ssa   bench/peer: fluxcd/pkg/ssa's ``ResourceManager.ApplyAllStaged`` as
             kustomize-controller drives it (field manager ``kustomize-controller``);
  raw-patch  bench/peer: one server-side-apply PATCH per object, Namespaces first, N at
             once, no reads and no dry runs: the API server's own limit on this machine.

Each applies its 1,000 objects (10 Namespaces; per namespace 40 ConfigMaps, 30 Services,
29 Deployments), then applies them again (the no-op). Per pass it prints wall seconds, the
applier's CPU seconds, the API server's and etcd's CPU seconds, and requests by verb as the
API server counted them (``apiserver_request_total`` from its /metrics, before and after,
for the bench's four resources; ``APPLY*`` is a dry-run apply), beside the client's own
count. Between passes it waits until the control plane is quiet (the controller-manager
creates a ReplicaSet and a Pod per Deployment), so no pass pays for the one before.

    .venv/bin/python bench/sync_1k.py [--namespaces 10] [--objects-per-ns 99]
        [--order ours,flux-ssa,raw-patch] [--concurrency 8] [--flux-concurrency 4] [--raw-concurrency 16]
        [--flux-qps -1] [--rounds 1] [--profile FILE]

``--order ours,kubectl`` adds ``kubectl apply --server-side`` (not run by default: 30 s a pass).

The Go peer is built once by bench/peer/build (cached outside the repository).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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

RESOURCES = {("", "namespaces"), ("", "configmaps"), ("", "services"), ("apps", "deployments")}
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
APPLIERS = ("ours", "flux-ssa", "raw-patch")
OPTIONAL = ("kubectl",)  # only when --order names it: 30 s a pass


def write_objects(root: Path, prefix: str, namespaces: int, per_ns: int) -> int:
    n = 0
    for i in range(namespaces):
        ns = f"{prefix}-{i:02d}"
        docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
        cms, svcs = int(per_ns * 0.4), int(per_ns * 0.3)
        deps = per_ns - cms - svcs
        docs += [_configmap(ns, j) for j in range(cms)]
        docs += [_service(ns, j) for j in range(svcs)]
        docs += [_deployment(ns, j) for j in range(deps)]
        (root / f"{ns}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        n += len(docs)
    return n


def _configmap(ns: str, j: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"cm-{j}", "namespace": ns, "labels": {"app": f"a{j % 7}"}},
        "data": {"key": f"value-{j}", "config.yaml": f"replicas: {j}\nname: cm-{j}\n"},
    }


def _service(ns: str, j: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{j}", "namespace": ns},
        "spec": {"selector": {"app": f"a{j}"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def _deployment(ns: str, j: int) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"dep-{j}", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": f"d{j}"}},
            "template": {"metadata": {"labels": {"app": f"d{j}"}}, "spec": {"containers": [container]}},
        },
    }


@dataclass
class Pass:
    """One applier's one pass over its objects."""

    applier: str
    name: str  # "initial" or "no-op"
    wall: float
    cpu: float  # the applier's own CPU seconds
    server_cpu: float = 0.0  # kube-apiserver + etcd CPU seconds
    server_requests: dict[str, int] = field(default_factory=dict)  # apiserver_request_total delta, by verb
    client_requests: dict[str, int] = field(default_factory=dict)  # the applier's own count, by HTTP method
    actions: dict[str, int] = field(default_factory=dict)
    round: int = 1


class Observer:
    """The control plane's side of a pass: request counters and CPU of kube-apiserver and etcd."""

    def __init__(self, cp: controlplane.ControlPlane) -> None:
        self.kubeconfig = str(cp.kubeconfig)
        self.pids = [cp.pids["kube-apiserver"], cp.pids["etcd"]]

    def requests(self) -> dict[tuple[str, ...], float]:
        text = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "get", "--raw", "/metrics"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out: dict[tuple[str, ...], float] = {}
        for line in text.splitlines():
            m = _SAMPLE.match(line)
            if not m:
                continue
            lb = dict(_LABEL.findall(m["labels"]))
            key = (lb.get("group", ""), lb.get("resource", ""), lb.get("subresource", ""))
            key += (lb.get("verb", ""), lb.get("dry_run", ""))
            out[key] = out.get(key, 0.0) + float(m["value"])
        return out

    def cpu(self) -> float:
        ticks = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / 100.0

    def quiet(self, *, timeout: float = 120.0, calm: int = 10, seconds: int = 3) -> None:
        """Wait until the API server handles fewer than ``calm`` requests a second for ``seconds``
        seconds in a row (the controller-manager has made its ReplicaSets and Pods), at most
        ``timeout`` seconds: what it does after one pass must not be billed to the next."""
        deadline = time.monotonic() + timeout
        last, still = sum(self.requests().values()), 0
        while time.monotonic() < deadline and still < seconds:
            time.sleep(1.0)
            now = sum(self.requests().values())
            still = still + 1 if now - last < calm else 0
            last = now

    @staticmethod
    def by_verb(before: dict[tuple[str, ...], float], after: dict[tuple[str, ...], float]) -> dict[str, int]:
        out: collections.Counter[str] = collections.Counter()
        for key, value in after.items():
            group, res, sub, verb, dry = key
            if (group, res) in RESOURCES and not sub and verb != "WATCH":
                delta = int(value - before.get(key, 0.0))
                if delta:
                    out[verb + ("*" if dry else "")] += delta
        return dict(out)


class Stepper:
    """Samples the control plane around each pass of one applier."""

    def __init__(self, obs: Observer, applier: str) -> None:
        self.obs, self.applier = obs, applier
        self.server: list[tuple[dict[str, int], float]] = []
        self._before: tuple[dict[tuple[str, ...], float], float] | None = None

    def begin(self) -> None:
        self.obs.quiet()
        self._before = (self.obs.requests(), self.obs.cpu())

    def end(self) -> None:
        assert self._before is not None
        reqs, cpu = self._before
        self.server.append((Observer.by_verb(reqs, self.obs.requests()), self.obs.cpu() - cpu))
        self._before = None


def run_ours(
    kubeconfig: str, folder: Path, step: Stepper, *, name: str, concurrency: int, profile: cProfile.Profile | None
) -> list[Pass]:
    """Two passes of our pipeline over ``folder``, on one long-lived connection and mapper
    (as the controller holds them); the mapper's discovery is paid in the first pass. The
    YAML is read and parsed before the clock starts, as the peer reads it before its own."""
    kube = client.connect(kubeconfig, pool_size=max(16, concurrency))
    mapper = discovery.RestMapper(kube)
    passes = []
    art = LocalSource(folder).fetch()
    r0 = time.perf_counter()
    manifests = render_build.render(art.path, ".")
    print(f"ours: reading and parsing the {len(manifests)} objects took {time.perf_counter() - r0:.2f}s (not timed)")
    for pass_ in ("initial", "no-op"):
        step.begin()
        kube.requests.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        opts = SyncOptions(name=name, namespace="default", concurrency=concurrency)  # one inventory a round
        try:
            res = sync_revision(
                steps=Given(manifests, art.revision), cluster=KubeCluster(kube, mapper, opts), options=opts
            )
        except StepError as e:
            raise SystemExit(f"ours {pass_}: sync failed: {e.errors[:3]}") from e
        finally:
            if profile:
                profile.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        step.end()
        assert res.plan is not None
        actions = {k: v for k, v in res.plan.counts().items() if v}
        passes.append(Pass("ours", pass_, wall, cpu, client_requests=dict(kube.requests), actions=actions))
    kube.close()
    return passes


def run_peer(binary: str, cmd: str, args: list[str], step: Stepper) -> list[Pass]:
    """Both passes of one peer command, measured through its --step handshake."""
    p = subprocess.Popen(
        [binary, cmd, "--step", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdin is not None
    assert p.stdout is not None
    assert p.stderr is not None
    err: list[str] = []
    started = False
    for line in p.stderr:
        if not line.startswith("ready "):
            err.append(line)
            continue
        if started:
            step.end()
        if line.split()[1] != "done":
            step.begin()
            started = True
        p.stdin.write("\n")
        p.stdin.flush()
        if line.split()[1] == "done":
            break
    out = p.stdout.read()
    if p.wait() != 0 or not out:
        raise SystemExit(f"peer {cmd} failed: {''.join(err)[-2000:]}")
    doc = json.loads(out)
    return [
        Pass(cmd, name, d["seconds"], d["cpu_seconds"], client_requests=d["requests"], actions=d["actions"])
        for name, d in (("initial", doc["initial"]), ("no-op", doc["noop"]))
    ]


def run_kubectl(kubeconfig: str, folder: Path, step: Stepper) -> list[Pass]:
    """``kubectl apply --server-side`` of the folder, twice; requests counted from its -v=6 log."""
    passes = []
    for name in ("initial", "no-op"):
        step.begin()
        t0 = time.perf_counter()
        p = subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", str(folder), "-v=6"],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        step.end()
        if p.returncode != 0:
            raise SystemExit(f"kubectl failed: {p.stderr[-2000:]}")
        methods = collections.Counter(re.findall(r"\] (GET|POST|PATCH|PUT|DELETE) https://", p.stderr))
        passes.append(Pass("kubectl", name, wall, 0.0, client_requests=dict(methods)))
    return passes


def peer_binary() -> str:
    p = subprocess.run([str(ROOT / "bench/peer/build")], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"building the Go peer failed:\n{p.stderr[-3000:]}")
    return p.stdout.strip().splitlines()[-1]


def verbs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def report(n: int, passes: list[Pass]) -> None:
    print(f"objects per applier and round: {n}  (server verbs: APPLY* = dry-run apply; the controller-manager's")
    print("  kube-root-ca.crt ConfigMap in each new Namespace shows as POST configmaps)")
    head = f"{'round':>5} {'applier':<10} {'pass':<8} {'wall s':>7} {'cpu s':>6} {'server cpu s':>12} {'requests':>8}"
    print(f"{head}  server by verb | client by method | result")
    for p in passes:
        total = sum(p.server_requests.values())
        print(
            f"{p.round:>5} {p.applier:<10} {p.name:<8} {p.wall:>7.2f} {p.cpu:>6.2f} {p.server_cpu:>12.2f} {total:>8}  "
            f"{verbs(p.server_requests)} | {verbs(p.client_requests)} | {verbs(p.actions)}"
        )
    print("ratios, median over rounds (wall; CPU = the applier's + kube-apiserver's + etcd's):")
    for name in ("initial", "no-op"):
        for other in (*APPLIERS[1:], *OPTIONAL):
            walls, cpus = [], []
            for r in sorted({p.round for p in passes}):
                ours = next((p for p in passes if (p.round, p.applier, p.name) == (r, "ours", name)), None)
                peer = next((p for p in passes if (p.round, p.applier, p.name) == (r, other, name)), None)
                if ours and peer:
                    walls.append(ours.wall / peer.wall)
                    if peer.cpu:  # kubectl's own CPU is not measured
                        cpus.append((ours.cpu + ours.server_cpu) / (peer.cpu + peer.server_cpu))
            if walls:
                each = ", ".join(f"{w:.2f}" for w in walls)
                print(
                    f"  {name:<8} ours/{other:<9}: wall {statistics.median(walls):.2f} ({each}); "
                    + (f"CPU {statistics.median(cpus):.2f}" if cpus else "")
                )


def run_round(
    a: argparse.Namespace, cp: controlplane.ControlPlane, dirs: dict[str, Path], *, order: list[str], round_: int
) -> list[Pass]:
    """Every applier once, in ``order``, each on its own fresh Namespaces."""
    obs, kc = Observer(cp), str(cp.kubeconfig)
    out: list[Pass] = []
    for applier in order:
        step = Stepper(obs, applier)
        if applier == "ours":
            got = run_ours(
                kc, dirs[applier], step, name=f"bench{round_}", concurrency=a.concurrency, profile=a.profiler
            )
        elif applier == "kubectl":
            got = run_kubectl(kc, dirs[applier], step)
        else:
            if applier == "flux-ssa":
                args = ["--concurrency", str(a.flux_concurrency), "--qps", str(a.flux_qps)]
            else:
                args = ["--concurrency", str(a.raw_concurrency)]
            got = run_peer(a.binary, applier, ["--kubeconfig", kc, "--dir", str(dirs[applier]), *args], step)
        for p, (reqs, cpu) in zip(got, step.server, strict=True):
            p.server_requests, p.server_cpu, p.round = reqs, cpu, round_
        out += got
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--objects-per-ns", type=int, default=99)
    ap.add_argument("--order", default=",".join(APPLIERS), help="appliers to run, in this order")
    ap.add_argument("--rounds", type=int, default=1, help="repeat, each round in the reverse order of the one before")
    ap.add_argument("--concurrency", type=int, default=8, help="ours: requests at once (the CLI's --concurrency)")
    ap.add_argument("--flux-concurrency", type=int, default=4, help="kustomize-controller's --concurrent-ssa default")
    ap.add_argument("--flux-qps", type=float, default=-1, help="flux-ssa client QPS (<0: none; Flux ships 50)")
    ap.add_argument("--raw-concurrency", type=int, default=16)
    ap.add_argument("--profile", type=Path, help="cProfile our passes into this file and print the top entries")
    a = ap.parse_args()
    order = [x for x in a.order.split(",") if x]
    if unknown := set(order) - set(APPLIERS) - set(OPTIONAL):
        ap.error(f"unknown appliers: {', '.join(sorted(unknown))}")
    a.binary = peer_binary() if set(order) & {"flux-ssa", "raw-patch"} else ""
    a.profiler = cProfile.Profile() if a.profile else None
    passes: list[Pass] = []
    n = a.namespaces * (a.objects_per_ns + 1)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        with controlplane.running(t / "cluster", kwok=False) as cp:
            try:
                for r in range(1, a.rounds + 1):
                    dirs = {x: t / f"{x}-{r}" for x in order}
                    for applier, d in dirs.items():
                        d.mkdir()
                        write_objects(d, f"{applier.split('-')[0]}{r}", a.namespaces, a.objects_per_ns)
                    passes += run_round(a, cp, dirs, order=order if r % 2 else order[::-1], round_=r)
            finally:
                report(n, passes)  # what was measured, even when a later round fails
    if a.profiler:
        a.profiler.dump_stats(a.profile)
        pstats.Stats(str(a.profile)).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
