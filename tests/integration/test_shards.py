"""`reconciler run --shards N`: GitSyncs split across replicas by shard Leases, end to end —
two real controller processes on the real control plane."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.request
from typing import Any

from controllers import GS, WEBHOOK_SECRET, Controller, Env, cm, free_port

from reconciler.gitsync.shards import shard_of

SHARDS = 4
N = 12


def _held(ctl: Controller) -> int:
    """reconciler_shards_held of a replica; -1 while its /metrics is not up yet."""
    try:
        text = ctl.metrics()
    except OSError:
        return -1
    m = re.search(r"^reconciler_shards_held (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else -1


def _synced_by(ctl: Controller) -> set[str]:
    """The GitSyncs this replica applied a revision of (from its log)."""
    return {ln["gitsync"] for ln in ctl.lines() if ln.get("reason") == "ReconciliationSucceeded" and ln.get("gitsync")}


def _request(env: Env, ns: str, name: str, value: str) -> None:
    env.kube.request(
        "PATCH",
        f"{GS}/namespaces/{ns}/gitsyncs/{name}",
        body={"metadata": {"annotations": {"gitops.reconciler.dev/requested-at": value}}},
        content_type="application/merge-patch+json",
    )


def _push(env: Env, port: int, url: str) -> int:
    """A signed GitHub push webhook for ``url``'s main branch to the replica listening on ``port``."""
    payload = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": env.url(url)}}).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature, "X-GitHub-Event": "push"}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/hook/github", data=payload, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
        return int(r.status)


def _handled(env: Env, ns: str, names: list[str], value: str) -> bool:
    return all((env.get(ns, n) or {}).get("status", {}).get("lastHandledRequestedAt") == value for n in names)


def test_two_replicas_split_the_gitsyncs_and_one_takes_over_when_the_other_dies(
    env: Env, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    git_repo.commit({f"app{i}/cm.yaml": cm(f"cm{i}", ns, {"i": str(i)}) for i in range(N)})
    args = ("--watch-namespace", ns, "--shards", str(SHARDS), "--lease-namespace", ns, "--lease-duration", "6")
    port = free_port()
    a, b = env.start(*args, name="a"), env.start(*args, name="b", webhook_port=port)
    eventually(lambda: _held(a) == 2 and _held(b) == 2, 90, "each replica to hold its fair share, 2 of 4 shards")

    names = [f"app{i}" for i in range(N)]
    for name in names:
        env.gitsync(ns, name, git_repo.url, path=name, interval="1h")
    eventually(lambda: all(env.ready(ns, n) for n in names), 60, "every GitSync Ready")

    by_a, by_b = _synced_by(a), _synced_by(b)
    assert by_a | by_b == {f"{ns}/{n}" for n in names}
    assert not by_a & by_b, "each GitSync reconciled by exactly one replica"
    assert by_a, "both replicas took part"
    assert by_b, "both replicas took part"
    shards_a = {shard_of(namespace=ns, name=g.split("/")[1], shards=SHARDS) for g in by_a}
    shards_b = {shard_of(namespace=ns, name=g.split("/")[1], shards=SHARDS) for g in by_b}
    assert not shards_a & shards_b, "a shard belongs to one replica"

    # a push webhook received by b reaches every GitSync, a's included: b only annotates them
    git_repo.commit({f"app{i}/cm.yaml": cm(f"cm{i}", ns, {"i": str(i), "pushed": "yes"}) for i in range(N)}, "push")
    assert _push(env, port, git_repo.url) == 202
    cms = [f"/api/v1/namespaces/{ns}/configmaps/cm{i}" for i in range(N)]
    eventually(lambda: all(env.kube.get(c)["data"].get("pushed") == "yes" for c in cms), 30, "the push applied")
    assert not _synced_by(a) & _synced_by(b), "still each GitSync by one replica only"
    stamped = {
        n
        for n in names
        if ((env.get(ns, n) or {})["metadata"].get("annotations") or {})
        .get("gitops.reconciler.dev/requested-at", "")
        .startswith("webhook:")
    }
    assert stamped == {g.split("/")[1] for g in by_a}, "b queued its own in memory and annotated only a's"

    # SIGKILL one: no hand-back; the survivor takes its shards once their Leases expire (6 s)
    a.proc.kill()
    a.proc.wait()
    orphans = sorted(g.split("/")[1] for g in by_a)
    for name in orphans:
        _request(env, ns, name, "after-kill")
    eventually(lambda: _held(b) == SHARDS, 30, "the survivor to take every shard after the Leases expire")
    eventually(lambda: _handled(env, ns, orphans, "after-kill"), 30, "the survivor to reconcile the dead one's")
    assert {f"{ns}/{n}" for n in orphans} <= _synced_by(b)


def test_sigterm_hands_the_shards_back_at_once(env: Env, git_repo: Any, namespace: str, eventually: Any) -> None:
    ns = namespace
    git_repo.commit({"app/cm.yaml": cm("cm", ns, {"k": "v"})})
    # A long lease: the survivor could only take the shards within the test's bound if handed back.
    args = ("--watch-namespace", ns, "--shards", str(SHARDS), "--lease-namespace", ns, "--lease-duration", "60")
    a, b = env.start(*args, name="a"), env.start(*args, name="b")
    eventually(lambda: _held(a) == 2 and _held(b) == 2, 60, "each replica to hold 2 of 4 shards")
    a.stop()  # SIGTERM
    assert a.proc.returncode == 0
    assert any(ln.get("reason") == "ShardsReleased" for ln in a.lines())
    eventually(lambda: _held(b) == SHARDS, 20, "the survivor to take the handed-back shards well before expiry (60 s)")
    env.gitsync(ns, "app", git_repo.url, path="app")
    eventually(lambda: env.ready(ns, "app"), 30, "the survivor to reconcile")
