"""The crash harness: kill a sync at one of its steps, start it again, and judge what is left.

Why a harness of its own: a GitOps controller is trusted with delete rights because what it
leaves behind after a crash is always one of two states, git's old revision or git's new one,
and never an object it forgets.  To show that, a trial kills the process the hard way (SIGKILL
to its whole process group, as a node or the OOM killer would end a Pod, render tool included)
at a chosen point, starts it again, and then reads the cluster *independently* of our code
(``kubectl``, not our planner) to check four things:

* live state equals git at the new or the old revision (every object, every value),
* the inventory lists every object that carries our owner label (none orphaned; the
  write-ahead record makes this hold at every instant, so it is checked right after the kill
  as well as after the restart),
* the inventory lists nothing that is gone once the sync has converged,
* a bystander (another owner's object, an unlabelled one) keeps its resourceVersion.

Kill points that are reached inside the render step are found through a kustomize wrapper the
renderer is pointed at (``RECONCILER_KUSTOMIZE``): it announces itself with marker files and
waits while the test kills.  Points among the API writes (after N of M applies, between apply
and the inventory write, mid-prune) are found by the fault proxy's callback at the Nth matching
request (``tests/faultproxy.py``), which holds that request while the process is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faultproxy

from reconciler.render import kustomize

ROOT = Path(__file__).resolve().parents[1]
GROUP = "gitops.reconciler.dev"
OWNER_LABEL = f"{GROUP}/sync"


# ----------------------------------------------------------------------------- revisions


@dataclass(frozen=True)
class Revision:
    """One revision of the test repository: ConfigMap name -> its ``data.v`` value."""

    name: str  # "A", "B", ... (also the commit message)
    objects: Mapping[str, str]

    def files(self, *, namespace: str, path: str, previous: Revision | None) -> dict[str, str | None]:
        """The git change that turns ``previous`` into this revision under ``path``
        (kustomization.yaml lists the files, so the renderer runs kustomize)."""
        files: dict[str, str | None] = {}
        for gone in set(previous.objects if previous else ()) - set(self.objects):
            files[f"{path}/{gone}.yaml"] = None
        for name, value in self.objects.items():
            files[f"{path}/{name}.yaml"] = json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": namespace},
                    "data": {"v": value},
                }
            )
        resources = "".join(f"  - {name}.yaml\n" for name in sorted(self.objects))
        files[f"{path}/kustomization.yaml"] = f"resources:\n{resources}"
        return files


def revisions(*names: str, keep: int = 5, first: int = 8, add: int = 4) -> list[Revision]:
    """A chain of revisions, each from the one before: its newest ``keep`` objects change value,
    the others leave git (pruned: under the mass-prune guard's half), ``add`` new ones are
    created.  With the defaults the first step has 9 applies and 3 prunes over an inventory of
    8, every later one 9 applies and 4 prunes over 9."""
    current = {f"k{i}": names[0] for i in range(first)}
    out = [Revision(names[0], dict(current))]
    serial = 0
    for rev in names[1:]:
        current = dict.fromkeys(list(current)[-keep:], rev)
        for _ in range(add):
            current[f"n{serial}"] = rev
            serial += 1
        out.append(Revision(rev, dict(current)))
    return out


# ----------------------------------------------------------------------------- render tool


class SlowKustomize:
    """A kustomize the test can stop in the middle: a shell wrapper around the pinned binary.

    While ``armed``, the wrapper touches ``entered`` (the revision is fetched, render begins),
    waits until ``go`` exists, runs the real kustomize, writes the first half of its output,
    touches ``half`` and waits again before the rest.  Not armed, it is the real kustomize.
    It runs in the renderer's sealed environment (no PATH), so every command is absolute.
    """

    def __init__(self, tmp: Path) -> None:
        real = kustomize.find_binary()
        assert real, "the pinned kustomize is not built (scripts/build-tool kustomize)"
        self.dir = tmp / "slow-kustomize"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "kustomize"
        d = shlex.quote(str(self.dir))
        self.path.write_text(
            "#!/bin/sh\n"
            f"d={d}\n"
            f'if [ ! -e "$d/armed" ]; then exec {shlex.quote(real)} "$@"; fi\n'
            ': > "$d/entered"\n'
            'while [ ! -e "$d/go" ]; do /bin/sleep 0.05; done\n'
            f'{shlex.quote(real)} "$@" > "$d/out.$$" || exit $?\n'
            'n=$(/usr/bin/stat -c %s "$d/out.$$")\n'
            '/usr/bin/head -c $((n / 2)) "$d/out.$$"\n'
            ': > "$d/half"\n'
            'while [ ! -e "$d/go2" ]; do /bin/sleep 0.05; done\n'
            '/usr/bin/tail -c +$((n / 2 + 1)) "$d/out.$$"\n'
            '/bin/rm -f "$d/out.$$"\n'
        )
        self.path.chmod(0o755)

    def arm(self) -> None:
        for marker in ("entered", "half", "go", "go2"):
            (self.dir / marker).unlink(missing_ok=True)
        (self.dir / "armed").touch()

    def disarm(self) -> None:
        """Back to the real kustomize; a wrapper still waiting is let go."""
        (self.dir / "armed").unlink(missing_ok=True)
        (self.dir / "go").touch()
        (self.dir / "go2").touch()

    def wait(self, marker: str, timeout: float = 30.0) -> None:
        wait_for(lambda: (self.dir / marker).exists(), timeout, f"kustomize wrapper to reach {marker!r}")

    def release_first_half(self) -> None:
        (self.dir / "go").touch()

    def env(self) -> dict[str, str]:
        return {"RECONCILER_KUSTOMIZE": str(self.path)}


# ----------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A `reconciler` process in its own process group, so SIGKILL takes its children too."""

    proc: subprocess.Popen[bytes]
    log: Path

    def sigkill(self) -> None:
        """SIGKILL the whole group, as the kernel ends a Pod's container: no handler runs.
        Does not wait, so the fault proxy can call it while it holds a request."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def kill(self) -> None:
        self.sigkill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def launch(argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None) -> Proc:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *argv],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # its own group: kill() reaches the render tool it runs
        cwd=ROOT,
    )
    return Proc(proc, log)


def sync_argv(*, kubeconfig: Path, repo_url: str, namespace: str, name: str, path: str, cache: Path) -> list[str]:
    """`reconciler sync` of one GitSync-like sync, one write at a time (so "after N applies" is exact)."""
    return [
        "sync",
        "--kubeconfig",
        str(kubeconfig),
        "--repo",
        repo_url,
        "--ref",
        "main",
        "--path",
        path,
        "-n",
        namespace,
        "--name",
        name,
        "--default-namespace",
        namespace,
        "--cache-dir",
        str(cache),
        "--concurrency",
        "1",
    ]


# ----------------------------------------------------------------------------- judging


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def kubectl_json(kubeconfig: Path, *args: str) -> Any:
    """Read the cluster with kubectl, not with our own client or planner."""
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        if "NotFound" in out.stderr:
            return None
        raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout)


@dataclass
class Observed:
    """The cluster as kubectl shows it: the sync's ConfigMaps, its inventory, every resourceVersion."""

    ours: dict[str, str]  # name -> data.v of every ConfigMap with our owner label
    inventory: set[str] | None  # ConfigMap names in the inventory (None: no inventory)
    revision: str  # the inventory's revision
    versions: dict[str, str]  # name -> resourceVersion of every ConfigMap in the namespace
    others: set[str] = field(default_factory=set)  # inventory ids of other kinds than ConfigMap

    @property
    def orphans(self) -> set[str]:
        """Objects labelled ours that the inventory does not list: a later prune would miss them."""
        return set(self.ours) - (self.inventory or set())


def observe(kubeconfig: Path, *, namespace: str, name: str) -> Observed:
    items = kubectl_json(kubeconfig, "get", "configmaps", "-n", namespace)["items"]
    owner = f"{namespace}.{name}"
    ours = {
        i["metadata"]["name"]: (i.get("data") or {}).get("v", "")
        for i in items
        if (i["metadata"].get("labels") or {}).get(OWNER_LABEL) == owner
    }
    versions = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}
    inv = next((i for i in items if i["metadata"]["name"] == f"{name}.gitsync-inventory"), None)
    if inv is None:
        return Observed(ours, None, "", versions)
    doc = json.loads(inv["data"]["inventory.json"])
    ids, others = set(), set()
    for e in doc["entries"]:
        ns, obj, group, kind = e["id"].split("_")
        if (ns, group, kind) == (namespace, "", "ConfigMap"):
            ids.add(obj)
        else:
            others.add(e["id"])
    return Observed(ours, ids, str(doc.get("revision", "")), versions, others)


@dataclass
class Bystanders:
    """Objects in the sync's namespace that are not ours: another sync's, and an unlabelled one."""

    names: dict[str, str] = field(default_factory=dict)  # name -> resourceVersion at creation

    @classmethod
    def create(cls, kubeconfig: Path, *, namespace: str) -> Bystanders:
        manifests = [
            {"name": "bystander-other", "labels": {OWNER_LABEL: f"{namespace}.someone-else"}},
            {"name": "bystander-plain", "labels": {}},
        ]
        for md in manifests:
            doc = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {**md, "namespace": namespace},
                "data": {"v": "not ours"},
            }
            subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "create", "-f", "-"],
                input=json.dumps(doc),
                text=True,
                capture_output=True,
                check=True,
            )
        seen = kubectl_json(kubeconfig, "get", "configmaps", "-n", namespace)["items"]
        return cls(
            {
                i["metadata"]["name"]: i["metadata"]["resourceVersion"]
                for i in seen
                if i["metadata"]["name"].startswith("bystander-")
            }
        )

    def touched(self, seen: Observed) -> list[str]:
        return sorted(n for n, rv in self.names.items() if seen.versions.get(n) != rv)


def verdict(seen: Observed, *, allowed: Sequence[Revision], bystanders: Bystanders, converged: bool) -> list[str]:
    """What is wrong with ``seen`` (empty: nothing).  ``converged``: the sync has finished since
    the crash, so live state must equal one of ``allowed`` exactly and the inventory list it."""
    problems = []
    if seen.orphans:
        problems.append(f"labelled ours but not in the inventory: {sorted(seen.orphans)}")
    if touched := bystanders.touched(seen):
        problems.append(f"bystanders changed: {touched}")
    if converged:
        if not any(seen.ours == dict(r.objects) for r in allowed):
            problems.append(f"live {seen.ours} equals none of {[r.name for r in allowed]}")
        elif seen.inventory != set(seen.ours):
            problems.append(f"inventory {sorted(seen.inventory or ())} is not live {sorted(seen.ours)}")
    return problems


def left(seen: Observed, *, old: Revision, new: Revision) -> str:
    """What a kill left between two revisions, in words, for the record."""
    done = sum(1 for n, v in new.objects.items() if seen.ours.get(n) == v)
    pruned = sum(1 for n in set(old.objects) - set(new.objects) if n not in seen.ours)
    return (
        f"{done}/{len(new.objects)} applied, {pruned}/{len(set(old.objects) - set(new.objects))} pruned, "
        f"inventory {len(seen.inventory or ())} entries, {len(seen.orphans)} orphans"
    )


def after_kill(
    point: KillPoint,
    proc: Proc,
    *,
    observe: Callable[[], Observed],
    old: Revision,
    new: Revision,
    bystanders: Bystanders,
) -> tuple[Observed, list[str], str]:
    """Wait for ``point`` to fire the kill of ``proc``, then judge what the dead process left: what
    was seen, what is wrong with it (before any restart) and what it left, in words."""
    try:
        point.reached(60)
    except AssertionError as e:
        raise AssertionError(f"{point.name}: {e}\n{proc.tail()}") from None
    finally:
        proc.kill()
        point.clear()
    seen = observe()
    problems = verdict(seen, allowed=[old, new], bystanders=bystanders, converged=False)
    if point.expected == "old" and seen.ours != dict(old.objects):
        problems.append(f"killed before any write, yet live is {seen.ours}, not {old.name}")
    return seen, problems, left(seen, old=old, new=new)


def lost(seen: Observed, want: Revision) -> int:
    """Objects of ``want`` missing or with another value: what a crash cost."""
    return sum(1 for n, v in want.objects.items() if seen.ours.get(n) != v)


# ----------------------------------------------------------------------------- kill points


class KillPoint:
    """Where in a sync the process is killed: ``arm`` before it starts (with the kill to send
    when the point is reached, where the point can send it itself), ``reached`` blocks until the
    process is there (held there, or killed), ``clear`` after the kill undoes the arrangement."""

    name = ""
    expected = ""  # the revisions live state may equal right after the kill: "old", or "either"

    def arm(self, kill: Callable[[], None]) -> None: ...

    def reached(self, timeout: float) -> None: ...

    def clear(self) -> None: ...


@dataclass
class AfterFetch(KillPoint):
    """The revision is fetched and checked out; the renderer has just started kustomize."""

    slow: SlowKustomize
    name: str = "after fetch (render starting)"
    expected: str = "old"

    def arm(self, kill: Callable[[], None]) -> None:
        self.slow.arm()  # the process waits in the wrapper: the test kills it

    def reached(self, timeout: float) -> None:
        self.slow.wait("entered", timeout)

    def clear(self) -> None:
        self.slow.disarm()


@dataclass
class MidRender(AfterFetch):
    """kustomize has written half of the revision's manifests to the renderer."""

    name: str = "mid-render (half of kustomize's output read)"

    def reached(self, timeout: float) -> None:
        self.slow.wait("entered", timeout)
        self.slow.release_first_half()
        self.slow.wait("half", timeout)


def is_write(ex: faultproxy.Exchange) -> bool:
    """A real write: not a server-side dry run (preflight sends those before the first write)."""
    return not re.search(r"(^|&)dryRun=", ex.query)


@dataclass(kw_only=True)
class AtRequest(KillPoint):
    """Held at the API server's door: the (``after`` + 1)th request matching ``method`` and
    ``path`` never reaches the API server (black-holed) while the process is killed, so exactly
    ``after`` of them did.  Which sync step that is follows from the pattern."""

    proxy: faultproxy.FaultProxy
    name: str
    method: str
    path: str
    after: int
    expected: str = "either"
    _seen: int = 0
    _hit: threading.Event = field(default_factory=threading.Event)
    _rule: faultproxy.Rule | None = None

    def _when(self, ex: faultproxy.Exchange) -> bool:
        if not is_write(ex):
            return False
        self._seen += 1
        return self._seen == self.after + 1

    def arm(self, kill: Callable[[], None]) -> None:
        """The kill is sent from the proxy's one thread, before it serves anything else: no
        other request of the process gets through once the point is reached."""
        self._seen = 0
        self._hit.clear()

        def hit(ex: faultproxy.Exchange) -> None:
            kill()
            self._hit.set()

        self._rule = self.proxy.add(
            faultproxy.Rule(
                method=self.method, path=self.path, when=self._when, fault=faultproxy.Fault.BLACKHOLE, on_request=hit
            )
        )

    def reached(self, timeout: float) -> None:
        if not self._hit.wait(timeout):
            raise AssertionError(f"no {self.method} {self.path} number {self.after + 1} within {timeout}s")

    def clear(self) -> None:
        if self._rule is not None:
            self.proxy.remove(self._rule)
            self._rule = None


def api_points(
    proxy: faultproxy.FaultProxy, *, namespace: str, name: str, applies: int, in_flight: int = 1
) -> list[AtRequest]:
    """The kill points among a sync's API writes (``applies``: how many objects it applies;
    ``in_flight``: how many it sends at once, so how many may land around the kill)."""
    objects = rf"/api/v1/namespaces/{namespace}/configmaps/(k|n)\d+$"
    inventory = rf"/api/v1/namespaces/{namespace}/configmaps/{re.escape(name)}\.gitsync-inventory$"

    def at(name: str, method: str, path: str, after: int) -> AtRequest:
        return AtRequest(proxy=proxy, name=name, method=method, path=path, after=after)

    return [
        at("at the first apply (write-ahead inventory stored)", "PATCH", objects, 0),
        at(
            f"after {applies // 2} of {applies} applies"
            if in_flight == 1
            else f"at apply {applies // 2 + 1} of {applies} (up to {in_flight} in flight)",
            "PATCH",
            objects,
            applies // 2,
        ),
        at("mid-prune (after 1 delete)", "DELETE", objects, 1),
        at("between apply+prune and the inventory write", "PATCH|POST", inventory, 1),
    ]


# ----------------------------------------------------------------------------- a controller


READY = "Ready"


class Controlled:
    """One GitSync (``name``, path ``app``) reconciled by a `reconciler run` the test starts,
    kills and starts again, talking to the API server ``via`` a kubeconfig (the fault proxy's);
    the test reads the cluster directly."""

    def __init__(
        self, *, env: Any, via: Path, namespace: str, repo: Any, tmp: Path, name: str, env_extra: Mapping[str, str] = {}
    ) -> None:
        self.env, self.via, self.ns, self.repo, self.tmp, self.name = env, via, namespace, repo, tmp, name
        self.extra = dict(env_extra)
        self.kubeconfig: Path = env.cluster.kubeconfig
        self.bystanders = Bystanders.create(self.kubeconfig, namespace=namespace)
        self.proc: Proc | None = None
        self.left = ""
        self.starts = 0

    def start(self, *flags: str) -> Proc:
        self.starts += 1
        argv = ["run", "--kubeconfig", str(self.via), "--watch-namespace", self.ns, "--metrics-addr", ""]
        argv += ["--health-addr", "", "--cache-dir", str(self.tmp / "cache"), *flags]
        self.proc = launch(argv, log=self.tmp / f"run-{self.starts}.log", env=self.extra)
        return self.proc

    def create(self, **spec: Any) -> None:
        self.env.gitsync(self.ns, self.name, self.repo.url, path="app", retryInterval="1s", **spec)

    def commit(self, rev: Revision, previous: Revision | None) -> str:
        sha: str = self.repo.commit(rev.files(namespace=self.ns, path="app", previous=previous), rev.name)
        return sha

    def request(self) -> None:
        """Ask for a sync now (the requested-at annotation), rather than wait for the interval."""
        self.env.kube.request(
            "PATCH",
            f"/apis/{GROUP}/v1/namespaces/{self.ns}/gitsyncs/{self.name}",
            body={"metadata": {"annotations": {f"{GROUP}/requested-at": str(time.time())}}},
            content_type="application/merge-patch+json",
        )

    def ready_condition(self) -> dict[str, Any]:
        obj = self.env.get(self.ns, self.name) or {}
        conds = (obj.get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == READY), {})

    def status(self) -> dict[str, Any]:
        return dict((self.env.get(self.ns, self.name) or {}).get("status") or {})

    def applied(self, sha: str, timeout: float = 90) -> None:
        def done() -> bool:
            obj = self.env.ready(self.ns, self.name)
            return bool(obj and obj["status"].get("lastAppliedRevision") == f"main@sha1:{sha}")

        self._wait(done, timeout, f"GitSync {self.name} Ready at {sha[:8]}")

    def failed(self, sha: str, timeout: float = 90) -> dict[str, Any]:
        """Wait for Ready=False on revision ``sha``; returns the condition."""

        def done() -> dict[str, Any] | None:
            st = self.status()
            cond = self.ready_condition()
            at = sha in str(st.get("lastAttemptedRevision", ""))
            return cond if at and cond.get("status") == "False" and cond.get("reason") != "Progressing" else None

        found: dict[str, Any] = self._wait(done, timeout, f"GitSync {self.name} Ready=False at {sha[:8]}")
        return found

    def _wait(self, predicate: Any, timeout: float, what: str) -> Any:
        try:
            return wait_for(predicate, timeout, what, interval=0.25)
        except AssertionError as e:
            tail = self.proc.tail() if self.proc else ""
            raise AssertionError(f"{e}\nstatus: {self.status()}\n{tail}") from None

    def observe(self) -> Observed:
        return observe(self.kubeconfig, namespace=self.ns, name=self.name)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
