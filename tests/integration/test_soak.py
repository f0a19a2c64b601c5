"""A short soak against git (bench/soak.py): random commits, the real controller, and after each
commit the live state (kubectl) compared with an independent render of git (git + PyYAML).

The long run is the bench (``bench/soak.py --commits 1000 --record``); this one keeps the suite
honest with the 50 commits issue 17 asks of it, invalid ones included, and mass prunes (the
generator's model predicts one or more in about 7 runs of 10): each must be refused until the
GitSync's allow-mass-prune annotation approves its revision (the soak checks the refusal, then
approves; tests/integration/test_mass_prune_approval_run.py checks that path deterministically).
The seed is printed and recorded: a failure reruns as ``bench/soak.py --commits 50 --seed N``.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import gitserver
from controllers import ROOT, Env
from reliability import Recorder

sys.path.insert(0, str(ROOT / "bench"))
import soak  # (bench/soak.py: the generator and the differential check)

COMMITS = int(os.environ.get("RECONCILER_SOAK_COMMITS", "50"))


def test_soak_against_git(env: Env, cluster: Any, tmp_path: Path, reliability: Recorder) -> None:
    seed = int(os.environ.get("RECONCILER_SOAK_SEED", random.SystemRandom().randrange(1 << 30)))
    print(f"soak seed {seed} (rerun: RECONCILER_SOAK_SEED={seed})")
    kubectl = soak.Kubectl(Path(cluster.kubeconfig))
    repo = gitserver.BareRepo(tmp_path / "fleet.git")
    policies = soak.setup(kubectl=kubectl, repo=repo, url=env.url(repo.url), workdir=tmp_path)
    env.start("--policies", str(policies))
    # invalid_share 0.3: ~15 of 50 commits break one GitSync (each followed by a valid one).
    summary = soak.soak(repo=repo, kubectl=kubectl, commits=COMMITS, seed=seed, invalid_share=0.3)
    print(summary.line())
    ok = summary.mismatches == 0 and summary.lost == 0 and summary.unintended_deletions == 0
    ok = ok and not summary.bystander_touched
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_kind.items()))
    reliability.record(
        area="soak",
        fault=f"{summary.commits} random commits (seed {seed}; {summary.invalid} invalid): {kinds}",
        expected="after each commit live state equals git; invalid commits change nothing; a mass prune is refused"
        " (live unchanged, the annotation named) until approved by annotation; bystander untouched",
        observed=summary.line(),
        passed=ok,
        lost=summary.lost + summary.unintended_deletions,
        tried=summary.commits,
    )
    assert summary.invalid > 0, summary.by_kind
    assert summary.valid > 0, summary.by_kind
    assert ok, "\n".join(summary.failures)
