"""Crash consistency: `reconciler sync` and `reconciler run` SIGKILLed at each step of a sync,
then started again (issue 17).

Each trial moves one sync from a revision to the next (9 applies, 3-4 prunes), kills the
process at one point, checks what the crash left (nothing of ours unrecorded, bystanders
untouched, and before the first write the old revision intact), starts it again and checks
the result: live state equals git, the inventory lists exactly what is live, nothing of
another owner changed.  The cluster is read with kubectl (tests/crashes.py), not our planner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import crashes
import faultproxy
import pytest
from controllers import Env
from crashes import AfterFetch, Bystanders, KillPoint, MidRender, Revision, SlowKustomize

PATH = "app"
NAME = "crash"
APPLIES = 9  # per step of crashes.revisions()


@pytest.fixture(scope="module")
def proxy(cluster: Any) -> Iterator[faultproxy.FaultProxy]:
    """The fault proxy in front of the session's API server; the syncs under test go through it."""
    with faultproxy.FaultProxy.kube(server=cluster.server, pki=cluster.root / "pki") as p:
        yield p


class CliTrials:
    """One `reconciler sync` (namespace, name) moved through a chain of revisions."""

    def __init__(
        self, *, kubeconfig: Path, via: Path, namespace: str, repo: Any, tmp: Path, slow: SlowKustomize
    ) -> None:
        """``kubeconfig`` reads the cluster directly; the sync goes ``via`` the fault proxy."""
        self.kubeconfig, self.ns, self.repo, self.tmp, self.slow = kubeconfig, namespace, repo, tmp, slow
        self.name = NAME
        self.argv = crashes.sync_argv(
            kubeconfig=via, repo_url=repo.url, namespace=namespace, name=self.name, path=PATH, cache=tmp / "cache"
        )
        self.bystanders = Bystanders.create(kubeconfig, namespace=namespace)
        self.left = ""  # what the last kill left, in words

    def commit(self, rev: Revision, previous: Revision | None) -> None:
        self.repo.commit(rev.files(namespace=self.ns, path=PATH, previous=previous), rev.name)

    def sync_to_end(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "reconciler", *self.argv],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **self.slow.env()},
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr

    def observe(self) -> crashes.Observed:
        return crashes.observe(self.kubeconfig, namespace=self.ns, name=self.name)

    def trial(self, point: KillPoint, old: Revision, new: Revision, *, back: bool = False) -> tuple[list[str], int]:
        """Kill a sync from ``old`` to ``new`` at ``point``, run it again; problems and objects lost.
        ``back``: git is reverted to ``old`` before the rerun, which must then prune what the
        killed sync created (the write-ahead inventory lists it)."""
        self.commit(new, old)
        running: list[crashes.Proc] = []
        point.arm(lambda: running[0].sigkill())
        proc = crashes.launch(self.argv, log=self.tmp / "sync.log", env=self.slow.env())
        running.append(proc)
        seen, problems, self.left = crashes.after_kill(
            point, proc, observe=self.observe, old=old, new=new, bystanders=self.bystanders
        )
        end = new
        if back:
            self.commit(Revision(old.name, old.objects), new)
            end = old
        self.sync_to_end()
        seen = self.observe()
        problems += crashes.verdict(seen, allowed=[end], bystanders=self.bystanders, converged=True)
        return [f"{point.name}: {p}" for p in problems], crashes.lost(seen, end)


def test_reconciler_sync_killed_at_each_step(
    cluster: Any, proxy: faultproxy.FaultProxy, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    slow = SlowKustomize(tmp_path)
    via = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
    trials = CliTrials(
        kubeconfig=cluster.kubeconfig, via=via, namespace=namespace, repo=git_repo, tmp=tmp_path, slow=slow
    )
    api = crashes.api_points(proxy, namespace=namespace, name=NAME, applies=APPLIES)
    # (kill point, git reverted to the old revision before the rerun)
    plan: list[tuple[KillPoint, bool]] = [
        (AfterFetch(slow), False),
        (MidRender(slow), False),
        *((p, False) for p in api),
        (api[1], True),  # killed mid-apply, then git goes back: the write-ahead record prunes what it created
    ]
    revs = crashes.revisions("A", *(f"R{i}" for i in range(len(plan))))
    trials.commit(revs[0], None)
    trials.sync_to_end()
    assert not crashes.verdict(trials.observe(), allowed=revs[:1], bystanders=trials.bystanders, converged=True)
    failures = []
    current = revs[0]
    for (point, back), new in zip(plan, revs[1:], strict=True):
        problems, lost = trials.trial(point, current, new, back=back)
        current = Revision(f"{current.name}'", current.objects) if back else new
        failures += problems
        then = f"git reverted to {current.name.rstrip(chr(39))}, run again" if back else "run again"
        reliability.record(
            area="crash",
            fault=f"reconciler sync SIGKILLed {point.name}, {then}",
            expected="nothing of ours unrecorded (inventory lists every labelled object, also right after the kill); "
            "after the rerun live = git and inventory = live; bystanders untouched",
            observed="; ".join(problems)
            or f"the kill left {trials.left}; the rerun converged: {len(current.objects)} objects, inventory exact",
            passed=not problems,
            lost=lost,
        )
    assert not failures, failures


class RunTrials(crashes.Controlled):
    """The GitSync under a controller that each trial kills; a new one starts on the same cache."""

    def trial(self, point: KillPoint, old: Revision, new: Revision) -> list[str]:
        proc = self.proc
        assert proc is not None
        point.arm(proc.sigkill)
        sha = self.commit(new, old)
        seen, problems, self.left = crashes.after_kill(
            point, proc, observe=self.observe, old=old, new=new, bystanders=self.bystanders
        )
        self.start()
        self.applied(sha)
        seen = self.observe()
        problems += crashes.verdict(seen, allowed=[new], bystanders=self.bystanders, converged=True)
        return [f"{point.name}: {p}" for p in problems]


def test_reconciler_run_killed_at_each_step(
    env: Env, proxy: faultproxy.FaultProxy, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    slow = SlowKustomize(tmp_path)
    via = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
    trials = RunTrials(
        env=env, via=via, namespace=namespace, repo=git_repo, tmp=tmp_path, env_extra=slow.env(), name=NAME
    )
    points: list[KillPoint] = [
        AfterFetch(slow),
        MidRender(slow),
        *crashes.api_points(proxy, namespace=namespace, name=NAME, applies=APPLIES, in_flight=8),
    ]
    revs = crashes.revisions("A", *(f"R{i}" for i in range(len(points))))
    sha = trials.commit(revs[0], None)
    trials.start()
    trials.create(interval="2s")
    trials.applied(sha)
    failures = []
    try:
        for point, (old, new) in zip(points, pairwise(revs), strict=True):
            problems = trials.trial(point, old, new)
            failures += problems
            reliability.record(
                area="crash",
                fault=f"reconciler run SIGKILLed {point.name}, a new controller started",
                expected="nothing of ours unrecorded (also right after the kill); the new controller converges: "
                "live = git, inventory = live, Ready at the new revision; bystanders untouched",
                observed="; ".join(problems) or f"the kill left {trials.left}; the new controller converged",
                passed=not problems,
                lost=crashes.lost(trials.observe(), new),
            )
    finally:
        if trials.proc is not None:
            trials.proc.stop()
    assert not failures, failures
