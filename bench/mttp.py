"""Benchmark: mean time to production (Flux's flux-benchmark shape) on the local control plane.

One git repository served over http (tests/gitserver.py, as the controller tests fetch it),
N GitSyncs, each rendering ``apps/app-<i>``: a Deployment scaled to 0, a ServiceAccount, a
Service and an Ingress. Two phases, one ``reconciler run`` process (``--workers``):
  1. all N GitSyncs created at once: time until all are Ready at the first revision;
  2. one commit that changes every app, pushed, announced through the push webhook: time
     from the push until all are Ready at the new revision.
With ``--noop`` a third phase waits one spec.interval in which nothing changes.
For each phase it prints wall time, the controller's CPU seconds (its own, and the git
children it waited for), API requests by verb (from its /metrics) and the load average;
at the end the controller's peak RSS. ``--profile out`` attaches py-spy to the controller
for the whole run and prints the top frames by own and by cumulative samples.

    .venv/bin/python bench/mttp.py --n 100 [--workers 4] [--profile /tmp/mttp-300]
    .venv/bin/python bench/mttp.py --n 300 --interval 2m --noop   # also what a no-op interval costs
    .venv/bin/python bench/mttp.py --n 200 --replicas 1,2,3   # per replica count, with a probe
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import controlplane  # noqa: E402
import gitserver  # noqa: E402
import mttp_profile  # noqa: E402
import yaml  # noqa: E402

from reconciler.kube import client, discovery, ssa  # noqa: E402

GS = "/apis/gitops.reconciler.dev/v1"
SYNC_NS = "mttp"  # the GitSyncs
APPS_NS = "mttp-apps"  # what they apply
SECRET = b"mttp-bench-webhook-secret-0123456789"


def app_docs(i: int, generation: int) -> list[dict[str, Any]]:
    """The four objects of app ``i``; ``generation`` changes the pod template (phase 2)."""
    name, labels = f"app-{i}", {"app": f"app-{i}"}
    meta = {"name": name, "namespace": APPS_NS, "labels": labels}
    container = {
        "name": "app",
        "image": "registry.k8s.io/pause:3.10",
        "env": [{"name": "GEN", "value": str(generation)}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": name, "containers": [container]},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    backend = {"service": {"name": name, "port": {"number": 80}}}
    rule = {"host": f"{name}.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": {"rules": [rule]}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    return [account, deployment, service, ingress]


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com"}
    env |= {"GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit_fleet(*, work: Path, n: int, generation: int) -> str:
    """Write every app at ``generation`` and commit; the new sha (:func:`push` publishes it)."""
    for i in range(n):
        d = work / "apps" / f"app-{i}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "app.yaml").write_text(yaml.safe_dump_all(app_docs(i, generation), sort_keys=False))
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"fleet generation {generation}", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def push(work: Path) -> None:
    git("push", "-q", "origin", "HEAD:main", cwd=work)


def make_repo(tmp: Path) -> tuple[Path, Path]:
    bare, work = tmp / "fleet.git", tmp / "fleet"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp)
    git("init", "-q", "-b", "main", str(work), cwd=tmp)
    git("remote", "add", "origin", str(bare), cwd=work)
    return bare, work


@dataclass
class Proc:
    """The controller process and what we read of it from /proc."""

    popen: subprocess.Popen[bytes]
    metrics_port: int
    webhook_port: int
    log: Path
    peak_rss: int = 0

    def cpu(self) -> tuple[float, float]:
        """(own CPU seconds, CPU seconds of waited-for children such as git)."""
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick

    def rss_peak(self) -> int:
        """VmHWM in bytes (the kernel's own high-water mark)."""
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss = int(line.split()[1]) * 1024
        return self.peak_rss

    def requests(self) -> dict[str, float]:
        """API requests by HTTP verb."""
        return {k: v for k, v in self.counts().items() if " " not in k and not k.startswith("#")}

    def counts(self) -> dict[str, float]:
        """Requests by HTTP verb ("GET"), by Kubernetes verb and resource ("list deployments"), and
        reconciles ended ("#reconciles")."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("reconciler_api_requests_total{"):
                verb = line.split('verb="', 1)[1].split('"', 1)[0]
                out[verb] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("reconciler_api_calls_total{"):
                verb = line.split('verb="', 1)[1].split('"', 1)[0]
                resource = line.split('resource="', 1)[1].split('"', 1)[0]
                out[f"{verb} {resource}"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("reconciler_reconcile_total{"):  # reconciles ended (success or failure)
                out["#reconciles"] = out.get("#reconciles", 0.0) + float(line.rsplit(" ", 1)[1])
        return out


def start_controller(*, kubeconfig: Path, tmp: Path, workers: int, extra: list[str]) -> Proc:
    ports = [controlplane.free_port() for _ in range(3)]
    secret = tmp / "webhook-secret"
    secret.write_text(SECRET.decode())
    log = tmp / "controller.log"
    argv = [sys.executable, "-m", "reconciler", "run", "--kubeconfig", str(kubeconfig), "--workers", str(workers)]
    argv += ["--metrics-addr", f"127.0.0.1:{ports[0]}", "--health-addr", f"127.0.0.1:{ports[1]}"]
    argv += ["--webhook-addr", f"127.0.0.1:{ports[2]}", "--webhook-secret-file", str(secret)]
    argv += ["--cache-dir", str(tmp / "cache"), "--log-level", "WARNING", *extra]
    popen = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    proc = Proc(popen, ports[0], ports[2], log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise SystemExit(f"controller exited: {log.read_text()[-2000:]}")
        try:
            proc.requests()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("controller did not serve /metrics within 60s")


def setup_cluster(kube: client.Kube) -> None:
    mapper = discovery.RestMapper(kube)
    for doc in yaml.safe_load_all((ROOT / "deploy" / "crd-gitsync.yaml").read_text()):
        if doc:
            ssa.apply(kube, doc, mapper=mapper, field_manager="bench")
    for ns in (SYNC_NS, APPS_NS):
        kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gitsyncs.gitops.reconciler.dev"
    while not any(c["type"] == "Established" for c in kube.get(path)["status"].get("conditions") or []):
        time.sleep(0.2)


def create_gitsyncs(*, kube: client.Kube, n: int, url: str, args: argparse.Namespace) -> None:
    def one(i: int) -> None:
        spec = {
            "source": {"git": {"url": url, "ref": {"branch": "main"}}},
            "path": f"./apps/app-{i}",
            "interval": args.interval,
            "retryInterval": "10s",
            "prune": True,
            "wait": args.wait,
        }
        body = {"apiVersion": "gitops.reconciler.dev/v1", "kind": "GitSync", "metadata": {"name": f"app-{i}"}}
        kube.request("POST", f"{GS}/namespaces/{SYNC_NS}/gitsyncs", body={**body, "spec": spec})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def ready_at(kube: client.Kube, sha: str) -> int:
    """How many GitSyncs are Ready, observed at their generation, with ``sha`` applied."""
    items = kube.get(f"{GS}/namespaces/{SYNC_NS}/gitsyncs")["items"]
    count = 0
    for o in items:
        st = o.get("status") or {}
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
        fresh = st.get("observedGeneration") == o["metadata"]["generation"]
        count += ok and fresh and str(st.get("lastAppliedRevision", "")).endswith(sha)
    return count


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    cpu: float = 0.0
    child_cpu: float = 0.0
    requests: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ready: int = 0
    server_cpu: dict[str, float] = field(default_factory=dict)  # control-plane process -> CPU seconds


SERVER_PIDS: dict[str, int] = {}
"""The control plane's processes (set once it runs): their CPU shares the 2 cores with the controller."""


def server_cpu() -> dict[str, float]:
    """CPU seconds so far of each control-plane process."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for name, pid in SERVER_PIDS.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


@dataclass
class Mark:
    """Where a phase starts: the clock, the controller's CPU and request counters."""

    t0: float
    cpu: tuple[float, float]
    requests: dict[str, float]
    server: dict[str, float] = field(default_factory=dict)

    @classmethod
    def now(cls, proc: Proc) -> Mark:
        return cls(time.monotonic(), proc.cpu(), proc.counts(), server_cpu())

    def server_since(self) -> dict[str, float]:
        return {k: v - self.server.get(k, 0.0) for k, v in server_cpu().items()}


def measure(*, proc: Proc, kube: client.Kube, name: str, n: int, sha: str, start: Mark, timeout: float) -> Phase:
    """Wait until all ``n`` are Ready at ``sha`` (or ``timeout``); the figures since ``start``."""
    t0, cpu0, req0 = start.t0, start.cpu, start.requests
    phase = Phase(name)
    while time.monotonic() - t0 < timeout:
        proc.rss_peak()
        phase.ready = ready_at(kube, sha)
        if phase.ready >= n or proc.popen.poll() is not None:
            break
        time.sleep(0.5)
    phase.seconds = time.monotonic() - t0
    cpu1, req1 = proc.cpu(), proc.counts()
    phase.cpu, phase.child_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    phase.requests = {k: v - req0.get(k, 0.0) for k, v in req1.items() if v - req0.get(k, 0.0)}
    phase.load = os.getloadavg()
    phase.server_cpu = start.server_since()
    return phase


def seconds(text: str) -> float:
    """``90s``, ``2m``, ``1h`` (spec.interval's common forms) in seconds."""
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


def idle(*, proc: Proc, kube: client.Kube, n: int, sha: str, start: Mark, seconds: float) -> Phase:
    """Nothing changes for ``seconds`` (one spec.interval and its jitter): what the interval costs."""
    phase = Phase("no-op")
    while time.monotonic() - start.t0 < seconds and proc.popen.poll() is None:
        proc.rss_peak()
        time.sleep(1.0)
    phase.ready = ready_at(kube, sha)
    phase.seconds = time.monotonic() - start.t0
    cpu1, req1 = proc.cpu(), proc.counts()
    phase.cpu, phase.child_cpu = cpu1[0] - start.cpu[0], cpu1[1] - start.cpu[1]
    phase.requests = {k: v - start.requests.get(k, 0.0) for k, v in req1.items() if v - start.requests.get(k, 0.0)}
    phase.load = os.getloadavg()
    phase.server_cpu = start.server_since()
    return phase


def webhook(proc: Proc, url: str) -> None:
    body = json.dumps({"url": url, "branch": "main"}).encode()
    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"http://127.0.0.1:{proc.webhook_port}/hook/generic", data=body, headers={"X-Signature": sig}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310
        r.read()


def report(*, args: argparse.Namespace, phases: list[Phase], proc: Proc, load0: tuple[float, ...]) -> None:
    kcm = f"{args.kcm_qps:g}" if args.kcm_qps else "default (20)"
    print(
        f"N={args.n} workers={args.workers} wait={args.wait} kcm-qps={kcm} cpus={os.cpu_count()} "
        f"load at start {load0[0]:.2f}"
    )
    print(f"{'phase':<10} {'ready':>7} {'wall s':>8} {'cpu s':>7} {'git cpu':>8} {'cpu/gs':>7} {'load1':>6}  requests")
    for p in phases:
        http = {k: v for k, v in p.requests.items() if " " not in k and not k.startswith("#")}
        reqs = ", ".join(f"{k} {int(v)}" for k, v in sorted(http.items()))
        per = p.cpu / max(1, args.n)
        print(
            f"{p.name:<10} {p.ready:>4}/{args.n:<3}{p.seconds:>8.1f} {p.cpu:>7.1f} {p.child_cpu:>8.1f} {per:>7.3f} "
            f"{p.load[0]:>6.2f}  {int(sum(http.values()))} ({reqs})"
        )
    print("requests per GitSync by Kubernetes verb and resource:")
    for p in phases:
        calls = {k: v for k, v in p.requests.items() if " " in k}
        total = sum(calls.values()) / max(1, args.n)
        per_gs = ", ".join(f"{k} {v / max(1, args.n):.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
        done = int(p.requests.get("#reconciles", 0))
        print(f"  {p.name:<8} {total:6.2f} ({done} reconciles): {per_gs}")
    print("control-plane CPU seconds by process (the same 2 cores as the controller):")
    for p in phases:
        each = ", ".join(f"{k} {v:.1f}" for k, v in sorted(p.server_cpu.items(), key=lambda kv: -kv[1]))
        print(f"  {p.name:<8} {sum(p.server_cpu.values()):6.1f} ({each}); controller {p.cpu:.1f}")
    print(f"controller peak RSS: {proc.peak_rss / 2**20:.0f} MiB")


def run(args: argparse.Namespace, tmp: Path) -> int:
    bare, work = make_repo(tmp)
    sha1 = commit_fleet(work=work, n=args.n, generation=1)
    push(work)
    with gitserver.HTTPGitServer() as gitd, controlplane.running(tmp / "cluster", kwok=False) as cp:
        url = gitd.url_for(bare)
        kube = client.connect(str(cp.kubeconfig), pool_size=16)
        SERVER_PIDS.update(cp.pids)
        setup_cluster(kube)
        proc = start_controller(kubeconfig=cp.kubeconfig, tmp=tmp, workers=args.workers, extra=args.controller_arg)
        spy = (
            mttp_profile.attach(pid=proc.popen.pid, out=args.profile, idle=args.profile_idle) if args.profile else None
        )
        load0 = os.getloadavg()
        try:
            m = Mark.now(proc)
            create_gitsyncs(kube=kube, n=args.n, url=url, args=args)
            phases = [measure(proc=proc, kube=kube, name="create", n=args.n, sha=sha1, start=m, timeout=args.timeout)]
            sha2 = commit_fleet(work=work, n=args.n, generation=2)
            m = Mark.now(proc)  # from the push: what a user waits for
            push(work)
            webhook(proc, url)
            phases.append(measure(proc=proc, kube=kube, name="push", n=args.n, sha=sha2, start=m, timeout=args.timeout))
            if args.noop:  # every GitSync's next interval falls in this window (push < 0.7 interval)
                window = 1.1 * seconds(args.interval) + 10.0
                phases.append(idle(proc=proc, kube=kube, n=args.n, sha=sha2, start=Mark.now(proc), seconds=window))
            proc.rss_peak()
        finally:
            if spy is not None:
                mttp_profile.finish(spy)
            proc.popen.terminate()
            proc.popen.wait(30)
        fetches = sum("info/refs?service=git-upload-pack" in r for r in gitd.requests)
        packs = sum("git-upload-pack" in r for r in gitd.requests)
        print(f"git fetches served: {fetches} ({packs} upload-pack requests)")
    report(args=args, phases=phases, proc=proc, load0=load0)
    if args.profile:
        mttp_profile.summarize(Path(args.profile), top=15)
    return 0 if all(p.ready == args.n for p in phases) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="GitSyncs (each 4 objects) [100]")
    ap.add_argument("--workers", type=int, default=4, help="reconciler run --workers [4]")
    ap.add_argument(
        "--kcm-qps",
        type=float,
        default=0.0,
        help="the controller-manager's --kube-api-qps (burst 1.5x) [0: Kubernetes' default, 20]; with wait, a "
        "fleet-wide rollout waits on the deployment controller, which that throttle bounds",
    )
    ap.add_argument("--interval", default="10m", help="spec.interval; the push phase is driven by the webhook [10m]")
    ap.add_argument(
        "--noop",
        action="store_true",
        help="a third phase: one spec.interval with nothing changed (use a short --interval, e.g. 2m)",
    )
    ap.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="spec.wait [true]")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per phase [1800]")
    ap.add_argument("--profile", default="", help="py-spy raw output file (needs py-spy on PATH or in .venv)")
    ap.add_argument(
        "--profile-idle", action="store_true", help="with --profile: sample waiting threads too (wall time, per thread)"
    )
    ap.add_argument("--controller-arg", action="append", default=[], help="extra `reconciler run` argument")
    import mttp_replicas  # --replicas: the same phases per replica count, with the probe (bench/mttp_replicas.py)

    mttp_replicas.add_arguments(ap)
    args = ap.parse_args()
    if args.kcm_qps:
        os.environ["KCM_API_QPS"] = f"{args.kcm_qps:g}"  # read by scripts/controlplane.py when it starts the KCM
    with tempfile.TemporaryDirectory(prefix="mttp-") as tmp:
        return mttp_replicas.run(args, Path(tmp)) if args.replicas else run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
