"""Start and stop a real local Kubernetes control plane on loopback.

The binaries come from ``scripts/controlplane build`` (compiled from the Go module proxy and
cached outside the repository).  This module is the single implementation used by
``make cluster``, ``make demo``, the pytest session fixture and the benchmarks, so every one of
them exercises the same etcd + kube-apiserver + kube-controller-manager + kube-scheduler.

Everything listens on 127.0.0.1 only.  A state file in the cluster directory records the
process ids, so ``down`` (or the next ``up``) can stop what an earlier, interrupted run left
behind; a pid is only signalled if its command line still points into that directory.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCRIPTS = Path(__file__).resolve().parent
COMPONENTS = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
KCM_CONTROLLERS = ",".join(
    [
        "garbage-collector-controller",
        "namespace-controller",
        "deployment-controller",
        "replicaset-controller",
        "statefulset-controller",
        "daemonset-controller",
        "job-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "clusterrole-aggregation-controller",
        "root-ca-certificate-publisher-controller",
        "endpointslice-controller",
        "endpoints-controller",
        "node-lifecycle-controller",  # lifts the not-ready taint from (kwok) Nodes that report Ready
        "disruption-controller",  # PDB status, so health waits on PDBs can finish
        "persistentvolumeclaim-protection-controller",  # lifts kubernetes.io/pvc-protection: PVCs can be deleted
    ]
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message says which part."""


def kcm_client_flags() -> list[str]:
    """The controller-manager's client limits: Kubernetes' defaults (20 requests/s, burst 30) unless
    $KCM_API_QPS says otherwise. Benchmarks set it to show what the deployment controller's own
    throttle costs a fleet-wide rollout (bench/mttp.py --kcm-qps); tests keep the defaults."""
    qps = os.environ.get("KCM_API_QPS", "")
    return [f"--kube-api-qps={qps}", f"--kube-api-burst={int(float(qps) * 1.5)}"] if qps else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- certificates


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _make_ca(pki: Path, name: str, cn: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn)
    ca = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    (pki / f"{name}.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(pki / f"{name}.key", key)
    return key, subject


def _issue(
    pki: Path,
    name: str,
    subject: x509.Name,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Name],
    now: dt.datetime,
    server: bool = False,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[1])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = b.sign(ca[0], hashes.SHA256())
    (pki / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki / f"{name}.key", key)


def make_pki(pki: Path) -> None:
    """Throw-away CAs, the serving cert, client certs per component and the SA signing key.

    The front-proxy CA is separate, as in kubeadm: the aggregator authenticates to
    extension API servers with it, and they must not accept ordinary client certs there.
    """
    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca = _make_ca(pki, "ca", "gitops-reconciler-test-ca", now)
    _issue(pki, "apiserver", _name("kube-apiserver"), ca, now, server=True)
    _issue(pki, "admin", _name("gitops-reconciler-test-admin", "system:masters"), ca, now)
    _issue(pki, "kube-controller-manager", _name("system:kube-controller-manager"), ca, now)
    _issue(pki, "kube-scheduler", _name("system:kube-scheduler"), ca, now)
    _issue(pki, "kwok", _name("system:kwok-controller", "system:masters"), ca, now)
    front = _make_ca(pki, "front-proxy-ca", "gitops-reconciler-front-proxy-ca", now)
    _issue(pki, "front-proxy-client", _name("front-proxy-client"), front, now)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki / "sa.key", sa_key)
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """Kubeconfig with file references (JSON is valid YAML; no extra dependency)."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)


# --------------------------------------------------------------------------- processes


@dataclass
class ControlPlane:
    """A running (or about to run) control plane rooted at ``root``."""

    root: Path
    bindir: Path
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)  # /proc start time: tells our pid from a reused one
    # Tests tie the components to their own life (PR_SET_PDEATHSIG), so even a SIGKILLed
    # pytest leaves nothing behind; `make cluster` does not, its processes outlive make.
    tie_to_parent: bool = False
    exits: dict[str, str] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)  # how each component was started, for restart()

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def save(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {"bindir": str(self.bindir), "ports": self.ports, "pids": self.pids, "starts": self.starts}, indent=2
            )
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.argv[name] = argv
        log = (self.root / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives `make cluster` returning; not killed by a shell ^C
            cwd=self.root,
            preexec_fn=_die_with_parent if self.tie_to_parent else None,
        )
        log.close()
        self.pids[name] = proc.pid
        self.starts[name] = _start_time(proc.pid) or 0
        self.save()

    def _alive(self, name: str) -> bool:
        pid = self.pids.get(name)
        if pid is None:
            return False
        with contextlib.suppress(ChildProcessError):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.exits[name] = (
                    f"killed by signal {os.WTERMSIG(status)}"
                    if os.WIFSIGNALED(status)
                    else f"exit code {os.waitstatus_to_exitcode(status)}"
                )
                return False
        return _is_ours(pid, self.starts.get(name, 0))

    def _log_tail(self, name: str, lines: int = 25) -> str:
        p = self.root / "logs" / f"{name}.log"
        if not p.exists():
            return "(no log)"
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:])

    def _ssl(self, client: str | None = "admin") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.root / "pki" / "ca.crt"))
        if client:
            pki = self.root / "pki"
            ctx.load_cert_chain(pki / f"{client}.crt", pki / f"{client}.key")
        return ctx

    def _wait(self, name: str, url: str, ctx: ssl.SSLContext | None, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self._alive(name):
                how = self.exits.get(name, "gone")
                raise ControlPlaneError(
                    f"{name} exited during start-up ({how}); last log lines:\n{self._log_tail(name)}"
                )
            try:
                with urllib.request.urlopen(url, context=ctx, timeout=5) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError, ssl.SSLError) as e:
                last = str(e)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"{name} did not answer {url} within {timeout:.0f}s ({last}); last log lines:\n{self._log_tail(name)}"
        )

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop one component (``etcd``, ``kube-apiserver``, ...) the hard way and reap it: a crash,
        for tests of what the controller does while it is gone. :meth:`restart` brings it back."""
        pid = self.pids[name]
        if _is_ours(pid, self.starts.get(name, 0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start a killed component again with its first command line (same ports, data and
        certificates) and wait until it answers; the kube-apiserver until ``/readyz`` is ok,
        which also needs etcd. Call it from the thread that started the control plane: with
        ``tie_to_parent`` the component dies with the thread that spawned it (PR_SET_PDEATHSIG)."""
        if self._alive(name):
            raise ControlPlaneError(f"{name} is still running; kill() it first")
        self._spawn(name, self.argv[name])
        if name == "etcd":
            self._wait(name, f"http://127.0.0.1:{self.ports['etcd']}/health", None, timeout)
        elif name == "kube-apiserver":
            self._wait(name, f"{self.server}/readyz", self._ssl(), timeout)

    def ready(self, timeout: float = 60.0) -> None:
        """Wait until the API server says it is ready again (after an etcd restart, say)."""
        self._wait("kube-apiserver", f"{self.server}/readyz", self._ssl(), timeout)

    def start(self, kwok: str | None = None, timeout: float = 120.0) -> None:
        root, b, pki = self.root, self.bindir, self.root / "pki"
        (root / "logs").mkdir(parents=True, exist_ok=True)
        make_pki(pki)
        for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler"):
            self.ports[name] = free_port()
        p = self.ports
        self._spawn(
            "etcd",
            [
                str(b / "etcd"),
                "--name=default",
                f"--data-dir={root / 'etcd-data'}",
                "--unsafe-no-fsync",
                f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
                f"--initial-cluster=default=http://127.0.0.1:{p['etcd-peer']}",
            ],
        )
        self._wait("etcd", f"http://127.0.0.1:{p['etcd']}/health", None, timeout)
        self._spawn(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p['apiserver']}",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/16",
                "--allow-privileged=true",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                *os.environ.get("APISERVER_EXTRA_ARGS", "").split(),
            ],
        )
        self._wait("kube-apiserver", f"{self.server}/readyz", self._ssl(), timeout)
        write_kubeconfig(self.kubeconfig, self.server, pki, "admin")
        for comp in ("kube-controller-manager", "kube-scheduler"):
            write_kubeconfig(root / f"{comp}.kubeconfig", self.server, pki, comp)
        kcm_cfg = root / "kube-controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                f"--kubeconfig={kcm_cfg}",
                f"--authentication-kubeconfig={kcm_cfg}",
                f"--authorization-kubeconfig={kcm_cfg}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['kcm']}",
                f"--cert-dir={root / 'kcm-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--controllers={KCM_CONTROLLERS}",
                "--concurrent-gc-syncs=5",
                *kcm_client_flags(),
            ],
        )
        sched_cfg = root / "kube-scheduler.kubeconfig"
        self._spawn(
            "kube-scheduler",
            [
                str(b / "kube-scheduler"),
                f"--kubeconfig={sched_cfg}",
                f"--authentication-kubeconfig={sched_cfg}",
                f"--authorization-kubeconfig={sched_cfg}",
                "--bind-address=127.0.0.1",
                f"--secure-port={p['scheduler']}",
                "--leader-elect=false",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # self-signed serving certs of kcm/scheduler on loopback
        self._wait("kube-controller-manager", f"https://127.0.0.1:{p['kcm']}/healthz", insecure, timeout)
        self._wait("kube-scheduler", f"https://127.0.0.1:{p['scheduler']}/healthz", insecure, timeout)
        # The ServiceAccount controller creating "default" proves kcm talks to the API server.
        self._wait(
            "kube-controller-manager",
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
            self._ssl(),
            timeout,
        )
        if kwok:
            self._start_kwok(Path(kwok), timeout)

    def _start_kwok(self, kwok_bin: Path, timeout: float) -> None:
        cfg = self.root / "kwok.kubeconfig"
        write_kubeconfig(cfg, self.server, self.root / "pki", "kwok")
        self.ports["kwok"] = free_port()
        self._spawn(
            "kwok",
            [
                str(kwok_bin),
                f"--kubeconfig={cfg}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "kwok-node-0",
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": "kwok-node-0",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        req = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.server}/api/v1/nodes",
            data=json.dumps(node).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, context=self._ssl(), timeout=10):  # noqa: S310
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._alive("kwok"):
                raise ControlPlaneError(f"kwok exited; last log lines:\n{self._log_tail('kwok')}")
            with urllib.request.urlopen(  # noqa: S310
                f"{self.server}/api/v1/nodes/kwok-node-0", context=self._ssl(), timeout=10
            ) as r:
                conds = json.load(r).get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                return
            time.sleep(0.5)
        raise ControlPlaneError("kwok did not mark kwok-node-0 Ready")


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM it when its parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 == PR_SET_PDEATHSIG


def _start_time(pid: int) -> int | None:
    """Start time of a live, non-zombie process (clock ticks since boot), else None.

    Identifies a process across pid reuse. (Its command line cannot: right after exec,
    /proc/<pid>/cmdline reads empty on some kernels.)
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _is_ours(pid: int, start: int) -> bool:
    """True if pid is alive and is the very process we started (guards against pid reuse)."""
    now = _start_time(pid)
    return now is not None and (start == 0 or now == start)


def down(root: Path, grace: float = 10.0) -> list[str]:
    """Stop every component recorded under ``root``; returns the names that were running."""
    root = root.resolve()
    state_file = root / "state.json"
    if not state_file.exists():
        return []
    state = json.loads(state_file.read_text())
    pids: dict[str, int] = state.get("pids", {})
    starts: dict[str, int] = state.get("starts", {})
    # Ctrl-C or SIGTERM arriving now must not leave half the components running: hold
    # them until every process is stopped; they are delivered when the mask is lifted.
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        return _stop_all(pids, starts, grace)
    finally:
        state_file.unlink(missing_ok=True)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stop_all(pids: dict[str, int], starts: dict[str, int], grace: float) -> list[str]:
    stopped = []
    for name in COMPONENTS:  # reverse start order: etcd last
        pid = pids.get(name)
        start = starts.get(name, 0)
        if pid is None or not _is_ours(pid, start):
            continue
        stopped.append(name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _is_ours(pid, start):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _is_ours(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # reap our own child; the zombie would otherwise linger
    return stopped


def build(kwok: bool = False) -> tuple[Path, Path | None]:
    """Run the (cached) Go build; returns the binary dir and, if asked for, the kwok binary."""

    def run(*args: str) -> Path:
        r = subprocess.run([str(SCRIPTS / "controlplane"), *args], stdout=subprocess.PIPE, text=True, check=False)
        if r.returncode != 0:
            raise ControlPlaneError(f"scripts/controlplane {' '.join(args)} failed (exit {r.returncode})")
        return Path(r.stdout.strip().splitlines()[-1])

    return run("build"), (run("build-kwok") if kwok else None)


def up(root: Path, kwok: bool = False, timeout: float = 120.0, tie_to_parent: bool = False) -> ControlPlane:
    """Build if needed, stop leftovers of an earlier run in ``root``, start, wait for readiness."""
    root = root.resolve()
    bindir, kwok_bin = build(kwok)
    down(root)
    if root.exists():
        for stale in ("etcd-data", "pki", "logs", "kcm-certs"):
            subprocess.run(["rm", "-rf", str(root / stale)], check=True)
    root.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(root=root, bindir=bindir, tie_to_parent=tie_to_parent)
    try:
        cp.start(kwok=str(kwok_bin) if kwok_bin else None, timeout=timeout)
    except BaseException:
        down(root)
        raise
    return cp


@contextlib.contextmanager
def running(root: Path, kwok: bool = False) -> Iterator[ControlPlane]:
    """Context manager for tests and benchmarks: always stops what it started."""
    cp = up(root, kwok=kwok, tie_to_parent=True)
    try:
        yield cp
    finally:
        down(root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="controlplane", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start the control plane in DIR and wait until it is ready")
    u.add_argument("dir", type=Path)
    u.add_argument("--kwok", action="store_true", help="also run kwok with one fake Node")
    d = sub.add_parser("down", help="stop the control plane started in DIR")
    d.add_argument("dir", type=Path)
    s = sub.add_parser("status", help="print which components of DIR are running")
    s.add_argument("dir", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "up":
            t0 = time.monotonic()
            cp = up(a.dir, kwok=a.kwok)
            print(f"control plane ready in {time.monotonic() - t0:.1f}s: {cp.server}")
            print(f"export KUBECONFIG={cp.kubeconfig}")
        elif a.cmd == "down":
            stopped = down(a.dir)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        else:
            state = a.dir.resolve() / "state.json"
            st = json.loads(state.read_text()) if state.exists() else {}
            pids, starts = st.get("pids", {}), st.get("starts", {})
            up_ = {name: _is_ours(pid, starts.get(name, 0)) for name, pid in pids.items()}
            for name, pid in pids.items():
                print(f"{name}: {'running' if up_[name] else 'stopped'} (pid {pid})")
            return 0 if up_ and all(up_.values()) else 1
    except ControlPlaneError as e:
        print(f"controlplane: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
