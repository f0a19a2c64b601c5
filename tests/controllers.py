"""Shared pieces for tests that run `reconciler run` as a real process: the GitSync CRD from
deploy/, a controller launcher, and helpers to poke at GitSyncs, Events and metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gitserver
import pytest
import yaml

from reconciler.kube import client, discovery, ssa

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
GS = "/apis/gitops.reconciler.dev/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cm(name: str, ns: str, data: dict[str, str]) -> str:
    # JSON, not PyYAML's YAML 1.1 dump: that leaves `y` or `on` unquoted, which kubectl (and our
    # reader, which reads as kubectl does) takes for booleans.
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}, indent=1
    )


@dataclass
class Controller:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int = 0

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"level": "RAW", "msg": line})
        return out

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Env:
    kube: client.Kube
    cluster: Any
    tmp: Path
    started: list[Controller] = field(default_factory=list)
    git_http: gitserver.HTTPGitServer | None = None  # file:// URLs of GitSyncs are served from here

    def start(
        self,
        *extra: str,
        name: str = "ctl",
        webhook_port: int = 0,
        metrics_port: int = 0,
        kubeconfig: Path | None = None,
    ) -> Controller:
        """`reconciler run` as a process; ``kubeconfig`` another identity than the admin's."""
        log = self.tmp / f"{name}-{len(self.started)}.log"
        port = metrics_port or free_port()
        health = free_port()
        if webhook_port:
            secret = self.tmp / "webhook-secret"
            secret.write_text(WEBHOOK_SECRET)
            extra = (*extra, "--webhook-addr", f"127.0.0.1:{webhook_port}", "--webhook-secret-file", str(secret))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "run",
                "--kubeconfig",
                str(kubeconfig or self.cluster.kubeconfig),
                "--metrics-addr",
                f"127.0.0.1:{port}",
                "--health-addr",
                f"127.0.0.1:{health}",
                "--cache-dir",
                str(self.tmp / "cache"),
                *extra,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "POD_NAME": f"{name}-{len(self.started)}"},
        )
        c = Controller(proc, log, port, health)
        self.started.append(c)
        return c

    def url(self, url: str) -> str:
        """A bare repository's file:// URL as the controller fetches it: over http from ``git_http``
        (`reconciler run` refuses file://). Other URLs as they are."""
        if self.git_http is None or not url.startswith("file://"):
            return url
        return self.git_http.url_for(urllib.parse.unquote(urllib.parse.urlsplit(url).path))

    def gitsync(self, ns: str, name: str, url: str, *, raw_url: bool = False, **spec: Any) -> dict[str, Any]:
        """Create a GitSync; a file:// ``url`` is served over http unless ``raw_url``."""
        url = url if raw_url else self.url(url)
        body = {
            "apiVersion": "gitops.reconciler.dev/v1",
            "kind": "GitSync",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "source": {"git": {"url": url, "ref": {"branch": "main"}}},
                "interval": "5s",
                "retryInterval": "2s",
                **spec,
            },
        }
        obj: dict[str, Any] = self.kube.request("POST", f"{GS}/namespaces/{ns}/gitsyncs", body=body)
        return obj

    def get(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_or_none(f"{GS}/namespaces/{ns}/gitsyncs/{name}")

    def ready(self, ns: str, name: str) -> dict[str, Any] | None:
        obj = self.get(ns, name)
        conds = ((obj or {}).get("status") or {}).get("conditions") or []
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        return obj if ok and obj and obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None

    def events(self, ns: str, name: str) -> list[dict[str, Any]]:
        items = self.kube.get(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
        return [e for e in items if (e.get("regarding") or {}).get("name") == name]


@pytest.fixture(scope="module")
def crd(kube: client.Kube) -> None:
    mapper = discovery.RestMapper(kube)
    for doc in yaml.safe_load_all((ROOT / "deploy" / "crd-gitsync.yaml").read_text()):
        if doc:
            ssa.apply(kube, doc, mapper=mapper, field_manager="test-setup")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd_obj = kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gitsyncs.gitops.reconciler.dev")
        if any(c["type"] == "Established" and c["status"] == "True" for c in crd_obj["status"].get("conditions") or []):
            return
        time.sleep(0.2)
    pytest.fail("GitSync CRD not Established")


@pytest.fixture(scope="session")
def git_http() -> Iterator[gitserver.HTTPGitServer]:
    """A plain-http git server on 127.0.0.1 for every repository on this machine."""
    with gitserver.HTTPGitServer() as server:
        yield server


@pytest.fixture
def env(crd: None, kube: client.Kube, cluster: Any, tmp_path: Path, git_http: gitserver.HTTPGitServer) -> Iterator[Env]:
    e = Env(kube=kube, cluster=cluster, tmp=tmp_path, git_http=git_http)
    yield e
    for c in e.started:
        c.stop()


def _edit(kube: client.Kube, path: str, body: dict[str, Any]) -> None:
    """What `kubectl edit` does: an update by another field manager."""
    kube.request(
        "PATCH", path, query=[("fieldManager", "kubectl-edit")], body=body, content_type="application/merge-patch+json"
    )


def _events(env: Env, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in env.events(ns, name) if e["reason"] == reason]


class ProcessGroup:
    """Child servers (Prometheus, Alertmanager) that are always stopped, their logs kept for failures."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.procs = tmp, []  # type: list[tuple[str, subprocess.Popen[bytes], Path]]

    def __enter__(self) -> ProcessGroup:
        return self

    def start(self, name: str, argv: list[str]) -> None:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))

    def tail(self) -> str:
        return "\n".join(
            f"--- {n}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]) for n, _, log in self.procs
        )

    def __exit__(self, *exc: object) -> None:
        for _, proc, _ in self.procs:
            proc.terminate()
        for _, proc, _ in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
            return 200 <= int(r.status) < 300
    except (urllib.error.URLError, OSError):
        return False
