"""Crash consistency: `reconciler sync` and `reconciler run` SIGKILLed at each step of a sync,
then started again (issue 17).

Each trial moves one sync from a revision to the next (9 applies, 3-4 prunes), kills the
process at one point, checks what the crash left (nothing of ours unrecorded, bystanders
untouched, and before the first write the old revision intact), starts it again and checks
the result: live state equals git, the inventory lists exactly what is live, nothing of
another owner changed.  The cluster is read with kubectl (tests/crashes.py), not our planner.
"""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import crashes
from crashes import AfterFetch, Bystanders, KillPoint, MidRender, Revision, SlowKustomize

PATH = "app"


class CliTrials:
    """One `reconciler sync` (namespace, name) moved through a chain of revisions."""

    def __init__(self, *, kubeconfig: Path, namespace: str, repo: Any, tmp: Path, slow: SlowKustomize) -> None:
        self.kubeconfig, self.ns, self.repo, self.tmp, self.slow = kubeconfig, namespace, repo, tmp, slow
        self.name = "crash-cli"
        self.argv = crashes.sync_argv(
            kubeconfig=kubeconfig, repo_url=repo.url, namespace=namespace, name=self.name, path=PATH, cache=tmp / "cache"
        )
        self.bystanders = Bystanders.create(kubeconfig, namespace=namespace)

    def commit(self, rev: Revision, previous: Revision | None) -> None:
        self.repo.commit(rev.files(namespace=self.ns, path=PATH, previous=previous), rev.name)

    def sync_to_end(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "reconciler", *self.argv],
            capture_output=True,
            text=True,
            timeout=120,
            env={**crashes.os.environ, **self.slow.env()},
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr

    def observe(self) -> crashes.Observed:
        return crashes.observe(self.kubeconfig, namespace=self.ns, name=self.name)

    def trial(self, point: KillPoint, old: Revision, new: Revision) -> tuple[list[str], int]:
        """Kill a sync from ``old`` to ``new`` at ``point``, run it again; problems and objects lost."""
        self.commit(new, old)
        point.arm()
        proc = crashes.launch(self.argv, log=self.tmp / "sync.log", env=self.slow.env())
        try:
            point.reached(60)
        except AssertionError as e:
            raise AssertionError(f"{point.name}: {e}\n{proc.tail()}") from None
        finally:
            proc.kill()
            point.clear()
        seen = self.observe()
        problems = crashes.verdict(seen, allowed=[old, new], bystanders=self.bystanders, converged=False)
        if point.expected == "old" and seen.ours != dict(old.objects):
            problems.append(f"killed before any write, yet live is {seen.ours}, not {old.name}")
        self.sync_to_end()
        seen = self.observe()
        problems += crashes.verdict(seen, allowed=[new], bystanders=self.bystanders, converged=True)
        return [f"{point.name}: {p}" for p in problems], crashes.lost(seen, new)


def test_reconciler_sync_killed_at_each_step(
    cluster: Any, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    slow = SlowKustomize(tmp_path)
    trials = CliTrials(kubeconfig=cluster.kubeconfig, namespace=namespace, repo=git_repo, tmp=tmp_path, slow=slow)
    points: list[KillPoint] = [AfterFetch(slow), MidRender(slow)]
    revs = crashes.revisions("A", *(f"R{i}" for i in range(len(points))))
    trials.commit(revs[0], None)
    trials.sync_to_end()
    assert not crashes.verdict(trials.observe(), allowed=revs[:1], bystanders=trials.bystanders, converged=True)
    failures = []
    for point, (old, new) in zip(points, pairwise(revs), strict=True):
        problems, lost = trials.trial(point, old, new)
        failures += problems
        reliability.record(
            area="crash",
            fault=f"reconciler sync SIGKILLed {point.name}, run again",
            expected="live = git (old right after the kill, new after the rerun); inventory lists every object of ours; bystanders untouched",
            observed="; ".join(problems) or f"converged to {new.name}: {len(new.objects)} objects, inventory exact, 0 orphans",
            passed=not problems,
            lost=lost,
        )
    assert not failures, failures
