"""API server faults against the running controller, through the fault proxy (issue 17).

Each trial breaks the wire between `reconciler run` and the kube-apiserver in one way while a
new revision is synced, and checks the promise a GitOps controller makes under failure: the
last good revision stays live (its lastAppliedRevision, and every object it has that the new one
drops), nothing is pruned, nothing of ours goes unrecorded, the failure is reported by reason,
and the sync converges on its own once the fault ends.  The cluster is read with kubectl.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import crashes
import faultproxy
import pytest
from controllers import Env
from crashes import Revision
from faultproxy import Fault, Rule

NAME = "faults"


@pytest.fixture(scope="module")
def proxy(cluster: Any) -> Iterator[faultproxy.FaultProxy]:
    with faultproxy.FaultProxy.kube(server=cluster.server, pki=cluster.root / "pki") as p:
        yield p


def objects_path(ns: str) -> str:
    return rf"/api/v1/namespaces/{ns}/configmaps/(k|n)\d+$"


@dataclass
class Scenario:
    """One fault: the rules that make it, and what the GitSync must say while it lasts."""

    fault: str  # for the record
    rules: Callable[[str], list[Rule]]  # namespace -> the rules
    reason: str  # Ready's reason while it lasts
    says: str  # a regex the Ready message matches
    untouched: bool = False  # the fault hits before the first write: live state stays the old revision exactly
    extra: list[str] = field(default_factory=list)  # filled by checks after the trial, for the record


def _write(ex: faultproxy.Exchange) -> bool:
    return crashes.is_write(ex)


def _dry_run(ex: faultproxy.Exchange) -> bool:
    return not crashes.is_write(ex)


def _list(ex: faultproxy.Exchange) -> bool:
    return "labelSelector" in ex.query and not ex.watch


SCENARIOS = [
    Scenario(
        "500 InternalError on every apply of a new object (mid-sync)",
        lambda ns: [Rule("PATCH", objects_path(ns).replace("(k|n)", "n"), Fault.STATUS, when=_write, status=500)],
        "ReconciliationFailed",
        r"500",
    ),
    Scenario(
        "503 ServiceUnavailable on the server-side dry runs (preflight)",
        lambda ns: [Rule("PATCH", objects_path(ns), Fault.STATUS, when=_dry_run, status=503)],
        "ReconciliationFailed",
        r"503",
        untouched=True,
    ),
    Scenario(
        "connection reset mid-body on the LIST of live objects (plan)",
        lambda ns: [Rule("GET", rf"/api/v1/namespaces/{ns}/configmaps$", Fault.RESET, when=_list, after_bytes=64)],
        "ReconciliationFailed",
        r"(?i)connection|reset|incomplete|protocol",
        untouched=True,
    ),
    Scenario(
        "connection reset mid-body on apply responses (the write landed, the answer did not)",
        lambda ns: [Rule("PATCH", objects_path(ns), Fault.RESET, when=_write, after_bytes=40)],
        "ReconciliationFailed",
        r"(?i)connection|reset|incomplete|protocol",
    ),
    Scenario(
        "API server unreachable for the sync's writes (connections refused)",
        lambda ns: [Rule("PATCH|POST|DELETE", rf"/api/v1/namespaces/{ns}/configmaps", Fault.REFUSE, when=_write)],
        "ReconciliationFailed",
        r"cannot reach the API server",
    ),
]


class FaultTrials(crashes.Controlled):
    def trial(self, proxy: faultproxy.FaultProxy, sc: Scenario, old: Revision, new: Revision) -> list[str]:
        rules = [proxy.add(r) for r in sc.rules(self.ns)]
        try:
            sha = self.commit(new, old)
            self.request()
            cond = self.failed(sha)
            seen = self.observe()
            problems = self.judge_failure(sc, cond, seen, old=old, new=new)
        finally:
            for r in rules:
                proxy.remove(r)
        t0 = time.monotonic()
        self.applied(sha)  # recovers on its own: the retry after the fault ended
        sc.extra.append(f"recovered {time.monotonic() - t0:.1f}s after the fault ended")
        problems += crashes.verdict(self.observe(), allowed=[new], bystanders=self.bystanders, converged=True)
        return problems

    def judge_failure(
        self, sc: Scenario, cond: dict[str, Any], seen: crashes.Observed, *, old: Revision, new: Revision
    ) -> list[str]:
        problems = crashes.verdict(seen, allowed=[old, new], bystanders=self.bystanders, converged=False)
        if cond.get("reason") != sc.reason:
            problems.append(f"Ready reason {cond.get('reason')!r}, want {sc.reason!r}")
        if not re.search(sc.says, cond.get("message", "")):
            problems.append(f"Ready message {cond.get('message')!r} does not say {sc.says!r}")
        dropped = set(old.objects) - set(new.objects)
        if gone := sorted(dropped - set(seen.ours)):
            problems.append(f"pruned during a failed sync: {gone}")
        last = self.status().get("lastAppliedRevision", "")
        if not last.startswith("main@sha1:") or new.name in last:
            problems.append(f"lastAppliedRevision moved: {last}")
        if sc.untouched and seen.ours != dict(old.objects):
            problems.append(f"the fault came before any write, yet live is {seen.ours}")
        sc.extra.append(f"Ready=False {cond.get('reason')}: {cond.get('message', '')[:160]}")
        return problems


def test_api_faults_mid_sync(
    env: Env, proxy: faultproxy.FaultProxy, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    trials = FaultTrials(
        env=env, via=proxy.kubeconfig(tmp_path / "proxy.kubeconfig"), namespace=namespace, repo=git_repo,
        tmp=tmp_path, name=NAME,
    )
    revs = crashes.revisions("A", *(f"F{i}" for i in range(len(SCENARIOS))))
    sha = trials.commit(revs[0], None)
    trials.start()
    trials.create(interval="1h")
    trials.applied(sha)
    failures = []
    try:
        for sc, (old, new) in zip(SCENARIOS, pairwise(revs), strict=True):
            problems = trials.trial(proxy, sc, old, new)
            failures += [f"{sc.fault}: {p}" for p in problems]
            reliability.record(
                area="api-server",
                fault=sc.fault,
                expected=f"Ready=False reason {sc.reason}, last good revision live, nothing pruned, "
                "0 orphans; converges once the fault ends",
                observed="; ".join(problems or sc.extra),
                passed=not problems,
                lost=crashes.lost(trials.observe(), new),
            )
    finally:
        trials.stop()
    assert not failures, failures
