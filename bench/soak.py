"""Soak against git, differential: random commits to a fleet repository, two GitSyncs, the real
controller, and after every commit live state compared with an independent render of git.

Why differential: the controller's own status says what it believes; the question is whether the
cluster holds what git says.  So both sides are computed without our code: git's side by reading
the commit with the ``git`` binary and parsing the files with PyYAML (plain JSON documents, which
every YAML reader reads alike), the live side with ``kubectl get -l <owner label> -o json``.
Objects being deleted (``deletionTimestamp`` set, a Namespace terminating) count as gone.

The generator (seeded, printed) makes valid commits — add/remove/rename files, edit fields, move
objects between the two GitSyncs, add and remove Namespaces (with objects in them) and CRDs (with
a custom resource) — and invalid ones mixed in: bad YAML, an object defined twice, a policy
violation (Deny), an object the other GitSync owns.  An invalid commit must change nothing: the
GitSync it breaks reports the failure at that revision and live state stays at the last valid one.
A valid commit that removes most of a GitSync's objects trips the mass-prune guard: the soak checks
the refusal (Ready=False, reason PruneRefused, naming the approval annotation and the sha; live
state unchanged), runs the ``kubectl annotate`` line the refusal prints, and then expects git.

    .venv/bin/python bench/soak.py --commits 300 [--seed N] [--invalid-share 0.2]

starts its own control plane (scripts/controlplane.py), git server and `reconciler run`, and
prints one line per commit and the totals.  tests/integration/test_soak.py runs a short one.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak_fleet import BASE_NS, SYNCS, Fleet, _cm, _text

__all__ = ["BASE_NS", "SYNCS", "Fleet", "Kubectl", "Summary", "git_render", "setup", "soak"]

ROOT = Path(__file__).resolve().parent.parent
LABEL = "gitops.reconciler.dev/sync"
REQUESTED_AT = "gitops.reconciler.dev/requested-at"
ALLOW_MASS_PRUNE = "gitops.reconciler.dev/allow-mass-prune"
NS = "soak"  # where the GitSyncs live
POLICY = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: soak-no-forbidden}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], resources: ["configmaps"], operations: ["CREATE", "UPDATE"]}
  validations:
    - expression: "!has(object.data) || !('forbidden' in object.data)"
      message: "soak: a ConfigMap may not carry the key 'forbidden'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: soak-no-forbidden}
spec:
  policyName: soak-no-forbidden
  validationActions: [Deny]
"""


# --------------------------------------------------------------------------- the two sides


Key = tuple[str, str, str]  # kind, namespace, name


def _content(doc: dict[str, Any]) -> Any:
    if doc["kind"] == "ConfigMap":
        return doc.get("data") or {}
    if doc["kind"] == "CustomResourceDefinition":
        return doc["spec"]["names"]["kind"]
    return doc.get("spec") if doc["kind"].startswith("Thing") else None


def _key(doc: dict[str, Any]) -> Key:
    md = doc["metadata"]
    return (doc["kind"], md.get("namespace") or "", md["name"])


def git_render(repo: Path, sha: str, *, unreadable_in: str = "") -> dict[str, dict[Key, Any]]:
    """What git says each GitSync should hold at ``sha``: ``git archive``, parsed with PyYAML.

    A file that does not parse is an error, except in ``unreadable_in`` (the GitSync an invalid
    commit breaks on purpose)."""
    tar = subprocess.run(["git", "--git-dir", str(repo), "archive", sha], check=True, capture_output=True).stdout
    out: dict[str, dict[Key, Any]] = {s: {} for s in SYNCS}
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            sync = member.name.split("/", 1)[0]
            if not member.isfile() or sync not in out:
                continue
            text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError:
                if sync != unreadable_in:
                    raise
                continue  # the invalid commit's bad file; that GitSync keeps its last valid render
            for doc in docs:
                if isinstance(doc, dict):
                    out[sync][_key(doc)] = _content(doc)
    return out


@dataclass
class Kubectl:
    kubeconfig: Path
    calls: int = 0

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls += 1
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args], check=check, capture_output=True, text=True
        )

    def _items(self, kinds: list[str], selector: str) -> list[dict[str, Any]]:
        proc = self.run("get", ",".join(kinds), "-A", "-l", selector, "-o", "json", check=False)
        if proc.returncode == 0:
            items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
            return items
        if len(kinds) == 1:  # a kind whose CRD is gone or not served yet: nothing of it lives
            return []
        return [i for k in kinds for i in self._items([k], selector)]  # find the kind that failed

    def live(self, thing_kinds: set[str]) -> dict[str, dict[Key, Any]]:
        """What the cluster holds labelled as each GitSync's, not being deleted."""
        selector = f"{LABEL} in ({','.join(f'{NS}.{s}' for s in SYNCS)})"
        items = self._items(["namespaces", "configmaps", "customresourcedefinitions"], selector)
        things = sorted(f"{k.lower().replace('thing', 'things')}.soak.example.com" for k in thing_kinds)
        if things:
            items += self._items(things, selector)
        out: dict[str, dict[Key, Any]] = {s: {} for s in SYNCS}
        for i in items:
            if not i["metadata"].get("deletionTimestamp"):
                out[i["metadata"]["labels"][LABEL].split(".", 1)[1]][_key(i)] = _content(i)
        return out

    def gitsyncs(self) -> dict[str, dict[str, Any]]:
        doc = json.loads(self.run("get", "gitsyncs.gitops.reconciler.dev", "-n", NS, "-o", "json").stdout)
        return {i["metadata"]["name"]: i for i in doc["items"]}


# --------------------------------------------------------------------------- the soak


@dataclass
class Summary:
    seed: int
    commits: int = 0
    valid: int = 0
    invalid: int = 0
    mismatches: int = 0  # commits after which live state differed from git (or did not converge)
    approvals: int = 0  # valid commits the mass-prune guard refused, checked, then approved by annotation
    lost: int = 0  # objects git wanted that were missing from the cluster after a commit
    unintended_deletions: int = 0  # objects that went missing across an invalid commit
    bystander_touched: bool = False
    kubectl_calls: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"seed={self.seed} commits={self.commits} valid={self.valid} invalid={self.invalid} "
            f"mass_prunes_approved={self.approvals} mismatches={self.mismatches} lost={self.lost} "
            f"unintended_deletions={self.unintended_deletions} "
            f"bystander_touched={self.bystander_touched} kubectl_calls={self.kubectl_calls} seconds={self.seconds:.1f}"
        )


def _things(*states: dict[Key, Any]) -> set[str]:
    return {k[0] for s in states for k in s if k[0].startswith("Thing")}


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    st = obj.get("status") or {}
    return next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})


def _settled(
    k: Kubectl, sha: str, breaks: str, deadline: float, *, approved: frozenset[str] = frozenset()
) -> tuple[str, list[str]]:
    """Wait until each GitSync has handled ``sha``: ('' or why not, []).  Returns early, with the
    GitSyncs whose mass-prune guard refused ``sha``, as soon as one does (not those ``approved``:
    they must apply it)."""
    pending = set(SYNCS)
    while pending and time.monotonic() < deadline:
        objs = k.gitsyncs()
        refused = []
        for name in sorted(pending):
            st, ready = objs[name].get("status") or {}, _ready(objs[name])
            attempted = str(st.get("lastAttemptedRevision", "")).endswith(sha)
            if name == breaks:
                done = attempted and ready.get("status") == "False"
            else:
                done = str(st.get("lastAppliedRevision", "")).endswith(sha) and ready.get("status") == "True"
                if attempted and ready.get("reason") == "PruneRefused" and name not in approved:
                    refused.append(name)
            if done:
                pending.discard(name)
        if refused:
            return "", refused
        if pending:
            time.sleep(0.3)
    return (f"GitSync(s) {sorted(pending)} did not settle at {sha[:12]}" if pending else ""), []


def _approve(k: Kubectl, name: str, sha: str, want: dict[Key, Any]) -> str:
    """Check a mass-prune refusal of ``sha`` by GitSync ``name`` — Ready=False naming the annotation
    and the sha, live state still ``want`` (its last applied revision) — then run the
    ``kubectl annotate`` line it prints.  '' or what was wrong (then nothing is approved)."""
    message = str(_ready(k.gitsyncs()[name]).get("message", ""))
    pattern = rf"kubectl annotate gitsync -n {NS} {name} {re.escape(ALLOW_MASS_PRUNE)}=(\S+) --overwrite"
    command = re.search(pattern, message)
    if command is None or command.group(1) != sha:
        return f"{name}: the refusal does not name {ALLOW_MASS_PRUNE}={sha}: {message}"
    live = k.live(_things(want))[name]
    if live != want:
        extra, missing = sorted(set(live) - set(want))[:3], sorted(set(want) - set(live))[:3]
        return f"{name}: the refused revision changed live state: extra={extra} missing={missing}"
    k.run(*shlex.split(command.group(0))[1:])  # as printed, minus the word kubectl
    return ""


def _compare(k: Kubectl, want: dict[str, dict[Key, Any]], deadline: float) -> tuple[list[str], int]:
    """Differences between git and live per GitSync (retried until ``deadline``), and objects lost."""
    while True:
        diffs, lost = [], 0
        state = k.live(_things(*want.values()))
        for sync in SYNCS:
            live = state[sync]
            missing = [key for key in want[sync] if key not in live]
            extra = [key for key in live if key not in want[sync]]
            changed = [key for key in want[sync] if key in live and live[key] != want[sync][key]]
            lost += len(missing)
            if missing or extra or changed:
                diffs.append(f"{sync}: missing={missing[:3]} extra={extra[:3]} changed={changed[:3]}")
        if not diffs or time.monotonic() > deadline:
            return diffs, lost
        time.sleep(0.5)


def soak(*, repo: Any, kubectl: Kubectl, commits: int, seed: int, invalid_share: float = 0.2,
         log: Callable[[str], None] = print, until: float = float("inf")) -> Summary:  # fmt: skip
    """Run ``commits`` random commits against the GitSyncs of :func:`setup` and compare after each
    (fewer if ``time.monotonic()`` passes ``until``: the totals say how many ran)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible from the printed seed
    fleet = Fleet(rng)
    out = Summary(seed=seed)
    start = time.monotonic()
    applied = git_render(repo.path, repo.head())
    # Start from the initial revision applied: otherwise a first commit that is invalid would be
    # the first revision the controller sees, and the state "before" it would never have existed.
    _request_sync(kubectl, repo.head())
    if why := _settled(kubectl, repo.head(), "", time.monotonic() + 120)[0]:
        raise RuntimeError(f"the initial revision was not applied: {why}")
    bystander = kubectl.run(
        "get", "configmap", "-n", BASE_NS, "bystander", "-o", "jsonpath={.metadata.resourceVersion}"
    ).stdout
    for i in range(commits):
        if time.monotonic() > until:
            log(f"time limit reached after {i} of {commits} commits")
            break
        change = fleet.next_change(invalid_share)
        before = kubectl.live(_things(*applied.values())) if change.breaks else {}
        sha = repo.commit(change.files, change.what)
        _request_sync(kubectl, sha)
        rendered = git_render(repo.path, sha, unreadable_in=change.breaks)
        previous, applied = applied, {s: applied[s] if s == change.breaks else rendered[s] for s in SYNCS}
        why, refused = _settled(kubectl, sha, change.breaks, time.monotonic() + 90)
        if refused:  # a mass prune: check the refusal, approve it, then expect git as for any commit
            problems = [p for name in refused if (p := _approve(kubectl, name, sha, previous[name]))]
            out.approvals += len(refused)
            why, again = _settled(kubectl, sha, change.breaks, time.monotonic() + 90, approved=frozenset(refused))
            why = " ".join([*problems, why, f"refused after approval: {again}" if again else ""]).strip()
        diffs, lost = _compare(kubectl, applied, time.monotonic() + (20 if not why else 1))
        if change.breaks:
            now = kubectl.live(_things(*before.values()))
            gone = [key for s in SYNCS for key in before[s] if key not in now[s]]
            out.unintended_deletions += len(gone)
        out.commits += 1
        out.invalid += bool(change.breaks)
        out.valid += not change.breaks
        out.by_kind[change.op] = out.by_kind.get(change.op, 0) + 1
        if why or diffs:
            out.mismatches += 1
            out.failures.append(f"commit {i + 1} {sha[:12]} ({change.what}): {why} {'; '.join(diffs)}")
        out.lost += lost
        verdict = "OK" if not (why or diffs) else f"MISMATCH {why} {' '.join(diffs)}"
        approvals = f" (mass prune of {', '.join(refused)} refused, then approved)" if refused else ""
        log(f"[{i + 1}/{commits}] {sha[:12]} {change.what}{approvals}: {verdict}")
    after = kubectl.run(
        "get", "configmap", "-n", BASE_NS, "bystander", "-o", "jsonpath={.metadata.resourceVersion}"
    ).stdout
    out.bystander_touched = after != bystander
    out.kubectl_calls = kubectl.calls
    out.seconds = time.monotonic() - start
    return out


def _request_sync(k: Kubectl, sha: str) -> None:
    """Both GitSyncs at once, as a push webhook would (their order is the controller's)."""
    k.run("annotate", "--overwrite", "-n", NS, "gitsyncs.gitops.reconciler.dev", "--all", f"{REQUESTED_AT}={sha}")


def setup(*, kubectl: Kubectl, repo: Any, url: str, workdir: Path) -> Path:
    """Namespaces, the bystander, an initial commit, the two GitSyncs; returns the policy folder."""
    for ns in (NS, BASE_NS):
        kubectl.run("create", "namespace", ns, check=False)
    kubectl.run("create", "configmap", "-n", BASE_NS, "bystander", "--from-literal=k=not-ours", check=False)
    repo.commit({f"{s}/cm-0-{s}.yaml": _text([_cm(f"seed-{s}", BASE_NS, "seed")]) for s in SYNCS}, "initial")
    policies = workdir / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "soak.yaml").write_text(POLICY)
    for s in SYNCS:
        body = {
            "apiVersion": "gitops.reconciler.dev/v1",
            "kind": "GitSync",
            "metadata": {"name": s, "namespace": NS},
            "spec": {"source": {"git": {"url": url, "ref": {"branch": "main"}}}, "path": f"./{s}", "prune": True,
                     "interval": "10m", "retryInterval": "1s", "timeout": "1m"},
        }  # fmt: skip
        (workdir / f"gitsync-{s}.json").write_text(json.dumps(body))
        kubectl.run("apply", "-f", str(workdir / f"gitsync-{s}.json"))
    return policies


# --------------------------------------------------------------------------- standalone


@contextmanager
def _services(workdir: Path) -> Iterator[tuple[Any, Any]]:
    sys.path.insert(0, str(ROOT / "scripts"))
    sys.path.insert(0, str(ROOT / "tests"))
    import controlplane
    import gitserver

    with controlplane.running(workdir / "cp", kwok=False) as cp, gitserver.HTTPGitServer() as git_http:
        yield cp, git_http


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1 << 30))
    ap.add_argument("--invalid-share", type=float, default=0.2)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: no limit)")
    ap.add_argument("--record", action="store_true", help="append the result to .reliability/results.jsonl")
    args = ap.parse_args()
    print(f"soak: seed {args.seed} (rerun with --seed {args.seed})", flush=True)
    sys.path.insert(0, str(ROOT / "tests"))
    import gitserver

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, _services(Path(tmp)) as (cp, git_http):
        work = Path(tmp)
        kubectl = Kubectl(Path(cp.kubeconfig))
        kubectl.run("apply", "--server-side", "-f", str(ROOT / "deploy" / "crd-gitsync.yaml"))
        kubectl.run("wait", "--for=condition=Established", "crd/gitsyncs.gitops.reconciler.dev")
        repo = gitserver.BareRepo(work / "fleet.git")
        policies = setup(kubectl=kubectl, repo=repo, url=git_http.url_for(repo.path), workdir=work)
        log = (work / "controller.log").open("wb")
        ctl = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "run", "--kubeconfig", str(cp.kubeconfig), "--policies", str(policies),
             "--cache-dir", str(work / "cache"), "--metrics-addr", f"127.0.0.1:{gitserver.free_port()}",
             "--health-addr", f"127.0.0.1:{gitserver.free_port()}"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": "soak"},
        )  # fmt: skip
        try:
            cpu0 = os.times()
            until = time.monotonic() + args.minutes * 60 if args.minutes else float("inf")
            summary = soak(
                repo=repo, kubectl=kubectl, commits=args.commits, seed=args.seed, invalid_share=args.invalid_share,
                log=lambda line: print(line, flush=True), until=until,
            )  # fmt: skip
            cpu1 = os.times()
            ctl_cpu = _cpu_seconds(ctl.pid)
        finally:
            ctl.terminate()
            ctl.wait(30)
    harness = cpu1.user - cpu0.user + cpu1.system - cpu0.system
    children = cpu1.children_user - cpu0.children_user + cpu1.children_system - cpu0.children_system
    print(summary.line())
    print(f"CPU seconds: controller {ctl_cpu:.1f}, harness {harness:.1f}, kubectl+git {children:.1f}")
    print("commits by kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_kind.items())))
    for f in summary.failures:
        print("FAILURE " + f)
    ok = summary.mismatches == 0 and summary.lost == 0 and summary.unintended_deletions == 0
    ok = ok and not summary.bystander_touched
    if args.record:
        _record(summary, ok=ok)
    return 0 if ok else 1


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, from /proc (the controller is not our waited child yet)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _record(summary: Summary, *, ok: bool) -> None:
    """The bench's line in docs/reliability.md, through the tests' recorder (same file, same format)."""
    import reliability

    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(summary.by_kind.items()))
    reliability.Recorder("bench/soak.py").record(
        area="soak",
        fault=f"{summary.commits} random commits (seed {summary.seed}; {summary.invalid} invalid): {kinds}",
        expected="after each commit live state equals git; invalid commits change nothing; a mass prune is refused"
        " (live unchanged, the annotation named) until approved by annotation; bystander untouched",
        observed=summary.line(),
        passed=ok,
        lost=summary.lost + summary.unintended_deletions,
        tried=summary.commits,
    )


if __name__ == "__main__":
    sys.exit(main())
