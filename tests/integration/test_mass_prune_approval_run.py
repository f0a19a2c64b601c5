"""Issue 17's soak defect: a GitSync reconciled by `reconciler run` had no way to approve an
intended mass prune (only `reconciler sync` has --allow-mass-prune), so it stayed Ready=False.

Now the refusal names the controller's remedy — the annotation, its exact value and a ready
`kubectl annotate` line, which this test runs as printed — and the approval is one-shot: it lifts
the guard for exactly the revision it names. A real `reconciler run`, the real control plane and
git server; each step is a reliability trial.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

from controllers import Env, cm
from reliability import Recorder

from reconciler.gitsync.spec import ALLOW_MASS_PRUNE

AREA = "safety-rule"
NAME = "apps"


def _ready(env: Env, ns: str) -> dict[str, Any]:
    obj = env.get(ns, NAME) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def _live(env: Env, ns: str) -> set[str]:
    """The ConfigMaps the GitSync owns in ``ns`` now (not being deleted)."""
    items = env.kube.get(f"/api/v1/namespaces/{ns}/configmaps")["items"]
    return {
        i["metadata"]["name"]
        for i in items
        if (i["metadata"].get("labels") or {}).get("gitops.reconciler.dev/sync") == f"{ns}.{NAME}"
        and not i["metadata"].get("deletionTimestamp")
    }


def _refused(env: Env, ns: str, sha: str, *, mentions: str = "") -> Any:
    """The Ready condition once it refuses revision ``sha`` (and says ``mentions``), else None."""
    ready = _ready(env, ns)
    attempted = str(((env.get(ns, NAME) or {}).get("status") or {}).get("lastAttemptedRevision", ""))
    ok = ready.get("reason") == "PruneRefused" and attempted == f"main@sha1:{sha}" and mentions in ready["message"]
    return ready if ok else None


def _applied(env: Env, ns: str, sha: str) -> Any:
    obj = env.ready(ns, NAME)
    return obj if obj and obj["status"].get("lastAppliedRevision") == f"main@sha1:{sha}" else None


def _event(env: Env, ns: str, reason: str, says: str) -> Any:
    return next((e for e in env.events(ns, NAME) if e["reason"] == reason and says in e["note"]), None)


def _annotate(env: Env, command: str) -> None:
    """Run the `kubectl annotate ...` line exactly as the refusal printed it."""
    argv = shlex.split(command)
    assert argv[:3] == ["kubectl", "annotate", "gitsync"], argv
    subprocess.run(["kubectl", "--kubeconfig", str(env.cluster.kubeconfig), *argv[1:]], check=True, text=True)


def _files(prefix: str, ns: str, names: range) -> dict[str, str | None]:
    return {f"app/{prefix}-{i}.yaml": cm(f"{prefix}-{i}", ns, {"v": prefix}) for i in names}


def test_a_mass_prune_is_refused_until_approved_for_its_revision_once(
    env: Env, git_repo: Any, namespace: str, eventually: Any, reliability: Recorder
) -> None:
    ns = namespace
    first = git_repo.commit(_files("old", ns, range(6)), "six ConfigMaps")
    env.start("--watch-namespace", ns)
    env.gitsync(ns, NAME, git_repo.url, path="app", prune=True, interval="3s", retryInterval="1s")
    eventually(lambda: _applied(env, ns, first), 60, "the first revision to be applied")
    old = {f"old-{i}" for i in range(6)}
    assert _live(env, ns) == old

    # 1. A commit that replaces every object of the inventory: refused, nothing applied or pruned.
    gone: dict[str, str | None] = {f"app/old-{i}.yaml": None for i in range(6)}
    second = git_repo.commit({**gone, **_files("new", ns, range(6))}, "replace all six")
    ready = eventually(lambda: _refused(env, ns, second), 60, "the mass prune to be refused")
    command = f"kubectl annotate gitsync -n {ns} {NAME} {ALLOW_MASS_PRUNE}={second} --overwrite"
    assert ready["status"] == "False"
    assert ready["message"] == (
        f"GitSync {ns}/{NAME}: revision main@sha1:{second}: prune guard failed: refusing to prune all 6 objects"
        " of the inventory: none of them is in the revision any more (wrong path? empty checkout?); if this is"
        f" intended, approve this revision once with the GitSync's annotation: {command}"
    )
    assert "--allow-mass-prune" not in ready["message"]  # the CLI's flag means nothing to a GitSync
    assert _live(env, ns) == old, "a refused revision applied or pruned something"
    event = eventually(lambda: _event(env, ns, "PruneRefused", command), 30, "the PruneRefused Event")
    assert event["type"] == "Warning"
    reliability.record(
        area=AREA,
        fault="`reconciler run`: a commit removes every object of a GitSync's inventory (6 of 6)",
        expected="refused: Ready=False PruneRefused naming the annotation, its value and a kubectl line; nothing"
        " applied or pruned",
        observed=f"PruneRefused, the kubectl line in status and Event; live objects unchanged ({len(old)})",
    )

    # 2. An approval of another revision (the old one) lifts nothing.
    _annotate(env, command.replace(f"={second}", f"={first}"))
    stale = f"(the approval in place, '{first}', is for another revision)"
    eventually(lambda: _refused(env, ns, second, mentions=stale), 60, "the stale approval to be seen and refused")
    assert _live(env, ns) == old
    reliability.record(
        area=AREA,
        fault="the allow-mass-prune annotation names another revision (the previous commit)",
        expected="still refused, the message says the approval is for another revision; nothing pruned",
        observed="refused with that message; live objects unchanged",
    )

    # 3. The approval the message asked for: pruned and applied, the approval on record.
    _annotate(env, command)
    obj = eventually(lambda: _applied(env, ns, second), 60, "the approved revision to be applied")
    new = {f"new-{i}" for i in range(6)}
    assert _live(env, ns) == new
    note = f"mass prune approved by annotation {ALLOW_MASS_PRUNE} for main@sha1:{second}"
    message = next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert message.endswith(f": 6 create, 6 prune; {note}"), message
    eventually(lambda: _event(env, ns, "Synced", note), 30, "the Synced Event recording the approval")
    assert any(note in line.get("msg", "") for line in env.started[0].lines())
    reliability.record(
        area=AREA,
        fault="the annotation set to the refused revision's sha, by the kubectl line the refusal printed",
        expected="reconciled at once; the 6 old objects pruned, the 6 new applied; the approval in status, Event, log",
        observed="Ready=True at that revision, live = git, 'mass prune approved by annotation' recorded",
    )

    # 4. One-shot: a later commit that again prunes too much is refused, the annotation notwithstanding.
    third = git_repo.commit({f"app/new-{i}.yaml": None for i in range(5)}, "remove five of six")
    ready = eventually(lambda: _refused(env, ns, third), 60, "the next mass prune to be refused again")
    assert f"refusing to prune 5 of 6 objects (83% > 50%) (the approval in place, '{second}'" in ready["message"]
    assert f"{ALLOW_MASS_PRUNE}={third} --overwrite" in ready["message"]
    assert _live(env, ns) == new
    # A short sha (git log --oneline) approves it as well.
    _annotate(env, f"kubectl annotate gitsync -n {ns} {NAME} {ALLOW_MASS_PRUNE}={third[:7]} --overwrite")
    eventually(lambda: _applied(env, ns, third), 60, "the short-sha approval to apply the third revision")
    assert _live(env, ns) == {"new-5"}
    reliability.record(
        area=AREA,
        fault="after an approved mass prune, a later commit again removes 5 of 6 objects (annotation still set)",
        expected="refused again (the approval is one-shot, bound to its revision); a 7-digit sha then approves it",
        observed="refused, nothing pruned; pruned after the short-sha approval",
        tried=2,
    )
