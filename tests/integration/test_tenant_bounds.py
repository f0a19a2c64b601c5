"""A tenant's GitSync cannot stall the controller or starve other tenants: a backtracking-bomb
patch target, a path outside the source, an unbounded timeout, and a namespace full of GitSyncs
that wait forever.  A real `reconciler run` process against the real control plane."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from controllers import Env, cm, free_port

from reconciler.kube import client

# Each test here is an attack; tests/reliability.py records its outcome for docs/reliability.md.
pytestmark = pytest.mark.attack(area="security")


@pytest.fixture
def other_namespace(kube: client.Kube) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    yield name
    kube.request("DELETE", f"/api/v1/namespaces/{name}")


def _ready_reason(env: Env, ns: str, name: str) -> tuple[str, str, str] | None:
    obj = env.get(ns, name) or {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return c["status"], c["reason"], c["message"]
    return None


def _applied(env: Env, ns: str, name: str, sha: str) -> bool:
    return bool((env.get(ns, name) or {}).get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha}")


def _healthz(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as r:
        return r.status == 200


def test_backtracking_bomb_in_a_patch_target_does_not_stall_the_controller(
    env: Env, git_repo: Any, namespace: str, other_namespace: str, eventually: Any
) -> None:
    evil_ns, ns = namespace, other_namespace
    # (a|aa)*c against 60 a's: ~10^12 steps for a backtracking engine, which holds the GIL throughout.
    git_repo.commit({"evil/cm.yaml": cm("a" * 60, evil_ns, {"k": "v"}), "ok/cm.yaml": cm("ok", ns, {"v": "1"})})
    health = free_port()
    env.start("--health-addr", f"127.0.0.1:{health}")
    patch = {"patch": "data: {patched: 'yes'}", "target": {"kind": "ConfigMap", "name": "(a|aa)*c"}}
    env.gitsync(evil_ns, "evil", git_repo.url, path="evil", patches=[patch])
    eventually(lambda: _ready_reason(env, evil_ns, "evil"), 30, "the evil GitSync to be reconciled")
    env.gitsync(ns, "ok", git_repo.url, path="ok")
    eventually(lambda: env.ready(ns, "ok"), 30, "the ordinary GitSync to become Ready")
    sha = git_repo.commit({"ok/cm.yaml": cm("ok", ns, {"v": "2"})}, "change")
    eventually(lambda: _applied(env, ns, "ok", sha), 30, "the ordinary GitSync to apply the next commit")
    assert env.kube.get(f"/api/v1/namespaces/{ns}/configmaps/ok")["data"] == {"v": "2"}
    assert _healthz(health)
    # The pattern matched nothing (RE2, anchored), so the evil GitSync simply applied its object unpatched.
    assert eventually(lambda: env.ready(evil_ns, "evil"), 30, "the evil GitSync to finish")
    assert "patched" not in env.kube.get(f"/api/v1/namespaces/{evil_ns}/configmaps/{'a' * 60}")["data"]


def test_path_outside_the_source_is_refused_before_anything_is_read(
    env: Env, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    git_repo.commit({"app/cm.yaml": cm("x", ns, {"k": "v"})})
    env.start("--watch-namespace", ns)
    env.gitsync(ns, "root", git_repo.url, path="/")
    env.gitsync(ns, "up", git_repo.url, path="app/../..")

    def stalled(name: str) -> tuple[str, str, str] | None:
        r = _ready_reason(env, ns, name)
        return r if r and r[1] == "InvalidSpec" else None

    _, _, msg = eventually(lambda: stalled("root"), 30, "path / to be refused")
    assert f"GitSync {ns}/root: spec.path: '/' must be a relative path inside the source" in msg
    _, _, msg = eventually(lambda: stalled("up"), 30, "path app/../.. to be refused")
    assert "spec.path: 'app/../..' must not contain '..'" in msg
    obj = env.get(ns, "root") or {}
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in obj["status"]["conditions"])


def test_timeout_above_the_ceiling_is_refused(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    git_repo.commit({"cm.yaml": cm("t", ns, {"k": "v"})})
    env.start("--watch-namespace", ns)  # the default ceiling: --max-timeout 1h
    env.gitsync(ns, "long", git_repo.url, timeout="10000h", wait=True)
    env.gitsync(ns, "fine", git_repo.url, timeout="1h", wait=True)

    def refused() -> tuple[str, str, str] | None:
        r = _ready_reason(env, ns, "long")
        return r if r and r[1] == "InvalidSpec" else None

    _, _, msg = eventually(refused, 30, "timeout 10000h to be refused")
    assert msg == (
        f"GitSync {ns}/long: spec.timeout: 36000000s is over this controller's maximum of 3600s "
        "(reconciler run --max-timeout)"
    )
    obj = env.get(ns, "long") or {}
    assert any(c["type"] == "Stalled" and c["status"] == "True" for c in obj["status"]["conditions"])
    assert eventually(lambda: env.ready(ns, "fine"), 30, "a timeout at the ceiling to be accepted")


def _never_ready(ns: str, name: str) -> str:
    """A Deployment whose pod no node will take (none has the label, kwok's fake nodes neither):
    health waits for it until the timeout."""
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "nodeSelector": {"example.com/no-such-node": "true"},
                        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                    },
                },
            },
        }
    )


def test_one_namespace_cannot_hold_every_worker(
    env: Env, git_repo: Any, namespace: str, other_namespace: str, eventually: Any
) -> None:
    hog, ns = namespace, other_namespace
    files = {f"hog{i}/d.yaml": _never_ready(hog, f"d{i}") for i in range(3)}
    git_repo.commit({**files, "ok/cm.yaml": cm("ok", ns, {"v": "1"})})
    env.start("--workers", "2")  # two workers: at most one per namespace by default
    for i in range(3):  # more GitSyncs than workers, each waiting up to 20 minutes for health
        env.gitsync(hog, f"hog{i}", git_repo.url, path=f"hog{i}", wait=True, timeout="20m")

    def waiting(name: str) -> bool:
        obj = env.get(hog, name) or {}
        return any(c["type"] == "Reconciling" for c in (obj.get("status") or {}).get("conditions") or [])

    eventually(lambda: waiting("hog0") or waiting("hog1") or waiting("hog2"), 30, "the hog GitSyncs to start waiting")
    time.sleep(2)  # let every worker the hog can get be taken
    t0 = time.monotonic()
    env.gitsync(ns, "ok", git_repo.url, path="ok")
    eventually(lambda: env.ready(ns, "ok"), 30, "the other namespace's GitSync to become Ready")
    assert time.monotonic() - t0 < 30
    assert sum(waiting(f"hog{i}") for i in range(3)) >= 1, "the hog is still waiting for health"
