"""Issue 15, acceptance 1 and 2: three `reconciler run --shards` replicas on one control plane,
each behind its own fault proxy (tests/faultproxy.py) that records every request it sends.

From those records the test rebuilds, for each GitSync, when each replica was writing for it
(apply, inventory, status) and checks that two replicas never did at once; it partitions one
replica (its requests held, and delivered late at the heal, the harshest kind of partition for
fencing), SIGTERMs one and SIGKILLs one, and measures how soon the others take over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from controllers import GS, Controller, Env, cm
from faultproxy import Exchange, Fault, FaultProxy, Rule

from reconciler.gitsync.shards import KIND_LABEL, shard_lease_name, shard_of
from reconciler.kube import client

N = 200
SHARDS = 6
LEASE = 15.0  # --lease-duration (the default): fencing deadline 10 s, a round every 2 s
INTERVAL = 30.0  # the GitSyncs' interval
GAP = 1.0  # writes of one replica for one GitSync closer than this form one span (one reconcile)
_TARGETS = (
    (re.compile(r"/gitsyncs/(g\d+)/status$"), "status"),
    (re.compile(r"/configmaps/c(\d+)$"), "apply"),
    (re.compile(r"/configmaps/(g\d+)\.gitsync-inventory$"), "inventory"),
)


@dataclass(frozen=True)
class Write:
    replica: str
    gitsync: str
    what: str  # apply | inventory | status
    start: float
    end: float


def writes_of(replica: str, exchanges: list[Exchange]) -> list[Write]:
    """The writes for a GitSync that reached the API server (a request the proxy never forwarded
    wrote nothing); one still in flight counts as open until now."""
    out = []
    for ex in exchanges:
        if ex.method not in ("POST", "PUT", "PATCH", "DELETE") or not ex.forwarded:
            continue
        for pattern, what in _TARGETS:
            m = pattern.search(ex.path)
            if m:
                g = m.group(1) if what != "apply" else f"g{m.group(1)}"
                out.append(Write(replica, g, what, ex.start, ex.end or time.time()))
    return out


def spans(writes: list[Write]) -> list[Write]:
    """Each replica's writes for each GitSync merged into spans (gaps < GAP joined)."""
    out: list[Write] = []
    for w in sorted(writes, key=lambda w: (w.gitsync, w.replica, w.start)):
        last = out[-1] if out else None
        if last and (last.gitsync, last.replica) == (w.gitsync, w.replica) and w.start - last.end < GAP:
            out[-1] = Write(w.replica, w.gitsync, "span", last.start, max(last.end, w.end))
        else:
            out.append(w)
    return out


def overlaps(writes: list[Write]) -> list[tuple[Write, Write]]:
    """Pairs of spans of different replicas for one GitSync that overlap in time."""
    by: dict[str, list[Write]] = {}
    for s in spans(writes):
        by.setdefault(s.gitsync, []).append(s)
    return [
        (a, b)
        for group in by.values()
        for i, a in enumerate(group)
        for b in group[i + 1 :]
        if a.replica != b.replica and a.start < b.end and b.start < a.end
    ]


def test_the_overlap_checker_finds_a_fabricated_overlap() -> None:
    a = [Write("a", "g1", "apply", 0.0, 0.1), Write("a", "g1", "status", 0.3, 0.4)]
    assert not overlaps([*a, Write("b", "g1", "status", 0.45, 0.5), Write("b", "g2", "apply", 0.2, 0.25)])
    between = Write("b", "g1", "apply", 0.2, 0.25)  # inside a's reconcile of g1, touching none of a's writes
    assert overlaps([*a, between]) == [(spans(a)[0], between)]
    assert overlaps([*a, Write("c", "g1", "status", 0.05, 2.0)])


# ---------------------------------------------------------------------------- the cluster test


def test_the_fault_proxy_carries_api_traffic_over_tls(cluster: Any, tmp_path: Path) -> None:
    """tests/faultproxy.py in front of the real API server, TLS on both sides: what the other
    fault tests rely on (a 429 honoured, a watch answered 410 as the API server does)."""
    with FaultProxy.kube(server=cluster.server, pki=Path(cluster.root) / "pki", tls=True) as proxy:
        kube = client.connect(str(proxy.kubeconfig(tmp_path / "kubeconfig")))
        busy = Rule(method="GET", path="^/api/v1/namespaces$", fault=Fault.STATUS, status=429, retry_after=0, times=1)
        proxy.add(busy)
        assert kube.get("/api/v1/namespaces")["items"], "answered once the 429 was waited out"
        assert kube.throttled == 1
        proxy.add(Rule(path="^/api/v1/configmaps$", when=lambda ex: ex.watch, fault=Fault.GONE))
        lines = list(kube.stream_lines("/api/v1/configmaps", [("watch", "1"), ("resourceVersion", "1")], (5, 5)))
        assert json.loads(lines[0])["object"]["code"] == 410
        assert [e.status for e in proxy.exchanges()] == [429, 200, 200]
        kube.close()


@dataclass
class Replica:
    name: str
    identity: str
    proxy: FaultProxy
    ctl: Controller


def _start(env: Env, proxies: contextlib.ExitStack, name: str, ns: str, **kw: Any) -> Replica:
    proxy = proxies.enter_context(FaultProxy.kube(server=env.cluster.server, pki=Path(env.cluster.root) / "pki"))
    args = ("--watch-namespace", ns, "--shards", str(SHARDS), "--lease-namespace", ns, "--lease-duration", str(LEASE))
    ctl = env.start(*args, name=name, kubeconfig=proxy.kubeconfig(env.tmp / f"{name}.kubeconfig"), **kw)
    proxies.callback(ctl.stop)  # before its proxy closes (LIFO): its hand-back still reaches the API server
    return Replica(name, f"{name}-{len(env.started) - 1}", proxy, ctl)


def _leases(env: Env, ns: str) -> dict[int, dict[str, Any]]:
    items = env.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", [("labelSelector", KIND_LABEL)])
    by_name = {i["metadata"]["name"]: i["spec"] for i in items["items"]}
    return {k: by_name.get(shard_lease_name(k)) or {} for k in range(SHARDS)}


def _holders(env: Env, ns: str) -> dict[int, str]:
    return {k: str(spec.get("holderIdentity") or "") for k, spec in _leases(env, ns).items()}


def _status(env: Env, ns: str) -> dict[str, dict[str, Any]]:
    items = env.kube.get(f"{GS}/namespaces/{ns}/gitsyncs")["items"]
    return {i["metadata"]["name"]: i.get("status") or {} for i in items}


def _wait_applied(env: Env, ns: str, revision: str, timeout: float) -> None:
    """Until all N GitSyncs applied ``revision``; the failure names a few that did not, and why."""
    deadline = time.monotonic() + timeout
    while True:
        st = _status(env, ns)
        behind = sorted(n for n, s in st.items() if not s.get("lastAppliedRevision", "").endswith(revision))
        if len(st) == N and not behind:
            return
        if time.monotonic() > deadline:
            why = {n: [c.get("message") for c in st[n].get("conditions") or []] for n in behind[:3]}
            pytest.fail(f"{N - len(behind)}/{N} applied {revision[:8]} after {timeout:g}s; e.g. {why}")
        time.sleep(0.5)


def _applied(env: Env, ns: str, names: set[str], revision: str, value: str) -> list[str] | bool:
    """True once every GitSync of ``names`` handled ``value`` at ``revision``; else those not yet."""
    st = _status(env, ns)
    ok = lambda s: s.get("lastHandledRequestedAt") == value and s.get("lastAppliedRevision", "").endswith(revision)  # noqa: E731
    return [n for n in sorted(names) if not ok(st.get(n, {}))] or True


def _handled(env: Env, ns: str, names: set[str], value: str) -> bool:
    st = _status(env, ns)
    return all(st.get(n, {}).get("lastHandledRequestedAt") == value for n in names)


def _request(env: Env, ns: str, names: set[str], value: str) -> None:
    for name in sorted(names):
        env.kube.request(
            "PATCH",
            f"{GS}/namespaces/{ns}/gitsyncs/{name}",
            body={"metadata": {"annotations": {"gitops.reconciler.dev/requested-at": value}}},
            content_type="application/merge-patch+json",
        )


def _of(identity: str, holders: dict[int, str], ns: str) -> set[str]:
    shards = {k for k, h in holders.items() if h == identity}
    return {f"g{i}" for i in range(N) if shard_of(namespace=ns, name=f"g{i}", shards=SHARDS) in shards}


def _applying(r: Replica) -> bool:
    """Whether ``r`` sent an apply within the last 2 s."""
    return any(e.start > time.time() - 2 for e in r.proxy.exchanges(method="PATCH", path=r"/configmaps/c\d+$"))


def _all_writes(replicas: list[Replica]) -> list[Write]:
    return [w for r in replicas for w in writes_of(r.name, r.proxy.exchanges())]


def _rfc(ts: str) -> float:
    return dt.datetime.strptime(ts.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


@pytest.fixture
def fleet(env: Env, git_repo: Any, namespace: str) -> tuple[Env, Any, str]:
    git_repo.commit({f"apps/g{i}/cm.yaml": cm(f"c{i}", namespace, {"v": "1"}) for i in range(N)})
    return env, git_repo, namespace


@pytest.mark.timeout(900)  # a loaded machine: the bounds that matter are asserted inside
def test_three_replicas_never_write_for_one_gitsync_at_once(
    fleet: tuple[Env, Any, str], eventually: Any, reliability: Any
) -> None:
    env, repo, ns = fleet
    with contextlib.ExitStack() as proxies:
        reps = [_start(env, proxies, "a", ns), _start(env, proxies, "b", ns)]
        reps.append(_start(env, proxies, "c", ns))
        a, b, c = reps
        fair = lambda h: sorted(list(h.values()).count(r.identity) for r in reps) == [2, 2, 2]  # noqa: E731
        eventually(lambda: fair(_holders(env, ns)), 120, "2 of 6 shards held by each replica")
        t_first = time.monotonic()
        for i in range(N):
            env.gitsync(ns, f"g{i}", repo.url, path=f"apps/g{i}", interval=f"{INTERVAL:g}s")
        first = repo.head()
        _wait_applied(env, ns, first, 600)
        print(f"\nshards: {N} applied by 3 replicas in {time.monotonic() - t_first:.1f}s")
        writers = {w.gitsync: w.replica for w in _all_writes(reps) if w.what == "status"}
        assert len(writers) == N
        assert {r.name for r in reps} == set(writers.values()), "every replica took part"
        assert not overlaps(_all_writes(reps))

        # ---- partition a while it is busy: a commit changes its GitSyncs; its requests are held
        holders = _holders(env, ns)
        orphans = _of(a.identity, holders, ns)
        repo.commit({f"apps/{g}/cm.yaml": cm(f"c{g[1:]}", ns, {"v": "2"}) for g in orphans}, "v2")
        second = repo.head()
        _request(env, ns, orphans, "v2")
        eventually(lambda: _applying(a), 120, "a applying v2")
        a.proxy.partition(Fault.HANG)
        cut_at = time.monotonic()
        time.sleep(1.0)  # a renewal in flight at the cut has landed by now
        renewed = max(_rfc(s["renewTime"]) for s in _leases(env, ns).values() if s.get("holderIdentity") == a.identity)
        eventually(lambda: a.identity not in _holders(env, ns).values(), 3 * LEASE, "the others to take a's shards")
        taken = time.monotonic() - cut_at
        eventually(lambda: _applied(env, ns, orphans, second, "v2"), 300, "a's GitSyncs at v2 by the others")
        a.proxy.heal()  # what a sent and still waits for reaches the API server now
        healed_at = time.time()
        eventually(lambda: fair(_holders(env, ns)), 120, "a back at its fair share after the heal")
        late = [w for w in writes_of("a", a.proxy.exchanges()) if w.end > renewed + LEASE and w.start < healed_at]
        held_back = len(a.proxy.exchanges()) - len([e for e in a.proxy.exchanges() if e.forwarded])
        clean = not late and not overlaps(_all_writes(reps))
        reliability.record(
            area="shards",
            fault=f"partition of 1 of 3 replicas mid-push ({len(orphans)} GitSyncs), requests delivered at the heal",
            expected="no write from it after its renewTime + lease duration; no two replicas write for one GitSync",
            observed=f"{len(late)} late writes, {held_back} requests never forwarded, others took over in {taken:.1f}s",
            passed=clean,
        )
        assert not late, f"a wrote after its lease could be taken over: {late[:3]}"
        assert not overlaps(_all_writes(reps))

        # ---- SIGTERM c: its shards handed back at once (its proxy saw the PUTs), taken by a and b
        c_shards = {k for k, h in _holders(env, ns).items() if h == c.identity}
        t, since = time.monotonic(), time.time()
        c.ctl.proc.terminate()
        handed_over = lambda: c.identity not in (h := _holders(env, ns)).values() and all(h.values())  # noqa: E731
        eventually(handed_over, LEASE, "a and b to hold c's shards before its Leases could expire")
        handover = time.monotonic() - t
        assert c.ctl.proc.wait(60) == 0, "a clean exit on SIGTERM"
        assert any(ln.get("reason") == "ShardsReleased" for ln in c.ctl.lines())
        handed = {e.path.rsplit("-", 1)[1] for e in c.proxy.exchanges(method="PUT", path="/leases/") if e.start > since}
        assert {str(k) for k in c_shards} <= handed, "each of its shard Leases written back on SIGTERM"
        assert handover < LEASE, f"handed back, not expired: {handover:.1f}s (lease {LEASE:g}s)"

        # ---- SIGKILL b: its GitSyncs reconciled again by a within lease duration + one interval
        victims = _of(b.identity, _holders(env, ns), ns)
        t0 = time.time()
        b.ctl.proc.kill()
        b.ctl.proc.wait()
        _request(env, ns, victims, "after-kill")
        eventually(lambda: _handled(env, ns, victims, "after-kill"), 3 * (LEASE + INTERVAL), "a to take b's GitSyncs")
        firsts = [
            min(w.end for w in writes_of("a", a.proxy.exchanges()) if w.gitsync == g and w.start > t0) for g in victims
        ]
        took = max(firsts) - t0
        reliability.record(
            area="shards",
            fault=f"SIGKILL of 1 of 2 replicas ({len(victims)} GitSyncs)",
            expected=f"its GitSyncs reconciled again within lease duration + interval ({LEASE + INTERVAL:g}s)",
            observed=f"all reconciled by the survivor {took:.1f}s after the kill; SIGTERM hand-over {handover:.1f}s",
            passed=took <= LEASE + INTERVAL,
        )
        assert took <= LEASE + INTERVAL
        assert not overlaps(_all_writes(reps))
        print(f"\nshards: SIGTERM hand-over {handover:.1f}s of {len(c_shards)} shards; SIGKILL take-over {took:.1f}s")
