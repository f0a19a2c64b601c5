"""API server faults against the running controller, through the fault proxy (issue 17).

Each trial breaks the wire between `reconciler run` and the kube-apiserver in one way while a
new revision is synced, and checks the promise a GitOps controller makes under failure: the
last good revision stays live (its lastAppliedRevision, and every object it has that the new one
drops), nothing is pruned, nothing of ours goes unrecorded, the failure is reported by reason,
and the sync converges on its own once the fault ends.  The cluster is read with kubectl.
"""

from __future__ import annotations

import json
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

from reconciler.kube.client import KubeError

NAME = "faults"
REQUEST_TIMEOUT = 3  # seconds: `run --request-timeout`, so a hung request fails the sync quickly
RETRY_AFTER = 2.0  # seconds: the 429's Retry-After
OUTAGE = REQUEST_TIMEOUT + 3.0  # seconds a killed control plane component stays down


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


def _message(cond: dict[str, Any]) -> str:
    """A Ready message without its `GitSync NS/NAME: revision R: ` lead, for the record."""
    return re.sub(r"^GitSync \S+: revision \S+: ", "", str(cond.get("message", "")))


SA = "system:serviceaccount:reconciler-system:gitops-reconciler"
WEBHOOK = "require-team.policy.example"
JSON = "application/json"
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    "\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _answer(ns: str, status: int, message: str = "", *, body: str = "", content_type: str = "") -> Rule:
    """Every apply (not its dry run) of an n* object answered ``status``, unsent to the API server:
    the dry runs passed, so the fault comes mid-sync (while k* objects remain, those are applied)."""
    return Rule(
        "PATCH",
        objects_path(ns).replace("(k|n)", "n"),
        Fault.STATUS,
        when=_write,
        status=status,
        message=message,
        body=body,
        content_type=content_type,
    )


def _inventory(ns: str) -> str:
    return rf"/api/v1/namespaces/{ns}/configmaps/{NAME}\.gitsync-inventory$"


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
        r"InternalError",
    ),
    Scenario(
        "503 ServiceUnavailable on the server-side dry runs (preflight)",
        lambda ns: [Rule("PATCH", objects_path(ns), Fault.STATUS, when=_dry_run, status=503)],
        "ReconciliationFailed",
        r"ServiceUnavailable",
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
        f"apply requests hang (no answer; the controller runs with --request-timeout {REQUEST_TIMEOUT}s)",
        lambda ns: [Rule("PATCH", objects_path(ns), Fault.HANG, when=_write)],
        "ReconciliationFailed",
        r"cannot reach the API server.*[Tt]imed out",
    ),
    Scenario(
        "API server unreachable for the sync's writes (connections refused)",
        lambda ns: [Rule("PATCH|POST|DELETE", rf"/api/v1/namespaces/{ns}/configmaps", Fault.REFUSE, when=_write)],
        "ReconciliationFailed",
        r"cannot reach the API server",
    ),
    Scenario(
        "409 Conflict on the applies (another writer's change; the dry runs passed)",
        lambda ns: [_answer(ns, 409, "Operation cannot be fulfilled on configmaps: the object has been modified")],
        "ReconciliationFailed",
        r"Conflict: Operation cannot be fulfilled",
    ),
    Scenario(
        "403 Forbidden on the applies mid-sync (RBAC revoked; the dry runs passed)",
        lambda ns: [_answer(ns, 403, f'configmaps is forbidden: User "{SA}" cannot patch resource "configmaps"')],
        "ReconciliationFailed",
        r"Forbidden: configmaps is forbidden: User .* cannot patch",
    ),
    Scenario(
        "422 from a validating admission webhook on the applies (the dry runs passed)",
        lambda ns: [_answer(ns, 422, f'admission webhook "{WEBHOOK}" denied the request: a team label is required')],
        "ReconciliationFailed",
        rf'admission webhook "{WEBHOOK}" denied the request: a team label is required',
    ),
    Scenario(
        "502 Bad Gateway with an HTML page (a load balancer in front) on the applies (the dry runs passed)",
        lambda ns: [_answer(ns, 502, body=HTML_502, content_type="text/html")],
        "ReconciliationFailed",
        r"(?s)Bad Gateway.*502 Bad Gateway.*nginx",
    ),
    Scenario(
        "200 OK with a malformed JSON body on the applies (the dry runs passed)",
        lambda ns: [_answer(ns, 200, body='{"apiVersion":"v1","kind":"ConfigMap","metadata":{', content_type=JSON)],
        "ReconciliationFailed",
        r"not JSON",
    ),
    Scenario(
        "410 Gone (Expired) on the LIST of live objects (plan)",
        lambda ns: [Rule("GET", rf"/api/v1/namespaces/{ns}/configmaps$", Fault.GONE, when=_list)],
        "ReconciliationFailed",
        r"Expired: too old resource version",
        untouched=True,
    ),
    Scenario(
        "500 InternalError on the inventory write (the write-ahead record)",
        lambda ns: [Rule("PATCH|POST|PUT", _inventory(ns), Fault.STATUS, when=_write, status=500)],
        "ReconciliationFailed",
        r"InternalError",
        untouched=True,
    ),
    Scenario(
        "500 InternalError on every prune DELETE",
        lambda ns: [Rule("DELETE", objects_path(ns), Fault.STATUS, status=500)],
        "ReconciliationFailed",
        r"prune failed: .*InternalError",
    ),
]


class FaultTrials(crashes.Controlled):
    seen: crashes.Observed  # the cluster after the last trial converged

    def trial(self, proxy: faultproxy.FaultProxy, sc: Scenario, old: Revision, new: Revision) -> list[str]:
        rules = [proxy.add(r) for r in sc.rules(self.ns)]
        try:
            sha = self.commit(new, old)
            t0 = time.monotonic()
            self.request()
            cond = self.failed(sha, timeout=40)
            sc.extra.append(f"failed {time.monotonic() - t0:.1f}s after the sync was requested")
            seen = self.observe()
            problems = self.judge_failure(sc, cond, seen, old=old, new=new)
        finally:
            for r in rules:
                proxy.remove(r)
        t0 = time.monotonic()
        self.applied(sha)  # recovers on its own: the retry after the fault ended
        sc.extra.append(f"recovered {time.monotonic() - t0:.1f}s after the fault ended")
        self.seen = self.observe()
        problems += crashes.verdict(self.seen, allowed=[new], bystanders=self.bystanders, converged=True)
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
        if (gone := sorted(dropped - set(seen.ours))) and not _after_a_full_apply(cond):
            problems.append(f"pruned during a failed sync: {gone}")
        elif gone:  # a retry found every write landed, applied nothing, pruned, then failed to record
            sc.extra.append(f"a retry whose writes had all landed pruned {gone}; only its inventory record failed")
        last = self.status().get("lastAppliedRevision", "")
        if not last.startswith("main@sha1:") or new.name in last:
            problems.append(f"lastAppliedRevision moved: {last}")
        if sc.untouched and seen.ours != dict(old.objects):
            problems.append(f"the fault came before any write, yet live is {seen.ours}")
        sc.extra.insert(0, f"Ready=False {cond.get('reason')}: {_message(cond)[:280]}")
        return problems


def _after_a_full_apply(cond: dict[str, Any]) -> bool:
    """Whether the failure is the inventory record's, which comes after apply and prune succeeded.

    A write whose answer was cut still landed: a retry may find every object as git wants it,
    apply nothing, prune what git dropped (rule: nothing is pruned after a failed *apply*), and
    then fail only at the record, the next write the fault cuts. Pruning there is intended."""
    message = _message(cond)
    return "gitsync-inventory" in message and "apply failed" not in message and "validation failed" not in message


def _watching(ex: faultproxy.Exchange) -> bool:
    return ex.watch and "labelSelector" in ex.query


def watch_rules(proxy: faultproxy.FaultProxy) -> list[Rule]:
    """The drift watch on ConfigMaps: its first stream ends after a second, the next one is
    answered 410 Gone (its resourceVersion too old), so it must list again and watch anew."""
    return [
        proxy.add(Rule("GET", r"/configmaps$", Fault.END, when=_watching, after=1.0, times=1)),
        proxy.add(Rule("GET", r"/configmaps$", Fault.GONE, when=_watching, times=1)),
    ]


def check_watch_resumed(trials: FaultTrials, proxy: faultproxy.FaultProxy, old: Revision) -> list[str]:
    """After the end and the 410: a relist, a new watch, and drift still caught at once."""
    gone = crashes.wait_for(
        lambda: [e for e in proxy.exchanges(path=r"/configmaps$") if e.fault == Fault.GONE], 60, "the 410 Gone"
    )[0]

    def resumed() -> list[faultproxy.Exchange]:
        later = [e for e in proxy.exchanges(method="GET", path=r"/configmaps$") if e.start > gone.start]
        relist = [e for e in later if not e.watch and "labelSelector" in e.query]
        return [e for e in later if _watching(e) and relist and e.start > relist[0].start]

    crashes.wait_for(resumed, 30, "a relist and a new watch after the 410")
    victim = next(iter(old.objects))
    trials.env.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{trials.ns}/configmaps/{victim}",
        query=[("fieldManager", "kubectl-edit")],
        body={"data": {"v": "edited by hand"}},
        content_type="application/merge-patch+json",
    )
    t0 = time.monotonic()
    crashes.wait_for(lambda: trials.observe().ours.get(victim) == old.objects[victim], 30, "the drift to be corrected")
    took = time.monotonic() - t0
    problems = [] if took < 15 else [f"drift corrected only after {took:.1f}s (interval is 1h: the watch missed it)"]
    return problems or [f"relisted and watched again; a hand edit corrected in {took:.1f}s (interval 1h)"]


def check_throttle(trials: FaultTrials, proxy: faultproxy.FaultProxy, old: Revision, new: Revision) -> list[str]:
    """A 429 with Retry-After on the first apply: the request is sent again, not before the wait."""
    rule = proxy.add(
        Rule("PATCH", objects_path(trials.ns), Fault.STATUS, when=_write, status=429, retry_after=RETRY_AFTER, times=1)
    )
    try:
        sha = trials.commit(new, old)
        trials.request()
        trials.applied(sha)
    finally:
        proxy.remove(rule)
    throttled = [e for e in proxy.exchanges(method="PATCH") if e.status == 429]
    assert len(throttled) == 1, throttled
    first = throttled[0]
    again = [e for e in proxy.exchanges(method="PATCH", path=re.escape(first.path) + "$") if e.start > first.start]
    if not again:
        return [f"{first.path} was never sent again after its 429"]
    waited = again[0].start - first.end
    if waited < RETRY_AFTER - 0.05:
        return [f"sent again {waited:.2f}s after a 429 asking for {RETRY_AFTER}s"]
    seen = trials.observe()
    problems = crashes.verdict(seen, allowed=[new], bystanders=trials.bystanders, converged=True)
    return problems or [f"sent again after {waited:.2f}s (Retry-After {RETRY_AFTER:g}s); the sync succeeded"]


def check_default_throttle(
    trials: FaultTrials, proxy: faultproxy.FaultProxy, old: Revision, new: Revision
) -> list[str]:
    """A 429 without Retry-After (Priority and Fairness may send none): sent again after client-go's
    default second, and the sync succeeds."""
    since = time.time()
    rule = proxy.add(Rule("PATCH", objects_path(trials.ns), Fault.STATUS, when=_write, status=429, times=1))
    try:
        sha = trials.commit(new, old)
        trials.request()
        trials.applied(sha)
    finally:
        proxy.remove(rule)
    first = next(e for e in proxy.exchanges(method="PATCH") if e.status == 429 and e.start >= since)
    again = [e for e in proxy.exchanges(method="PATCH", path=re.escape(first.path) + "$") if e.start > first.start]
    if not again:
        return [f"{first.path} was never sent again after its 429"]
    waited = again[0].start - first.end
    if waited < 0.95:
        return [f"sent again {waited:.2f}s after a 429 without Retry-After (want the default 1s)"]
    problems = crashes.verdict(trials.observe(), allowed=[new], bystanders=trials.bystanders, converged=True)
    return problems or [f"sent again after {waited:.2f}s (no Retry-After: the 1s default); the sync succeeded"]


LATENCY = 0.5  # seconds added to every request (~30 of them in a sync of 9 applies and 4 prunes)


def check_latency(trials: FaultTrials, proxy: faultproxy.FaultProxy, old: Revision, new: Revision) -> list[str]:
    """Every request answered LATENCY seconds late (a loaded API server): slower, but the sync
    succeeds (each request is well within --request-timeout) and no attempt fails."""
    assert trials.proc is not None
    mark = len(_log(trials.proc))
    rule = proxy.add(Rule(".*", "", Fault.PASS, delay=LATENCY))
    try:
        sha = trials.commit(new, old)
        t0 = time.monotonic()
        trials.request()
        trials.applied(sha, timeout=120)
        took = time.monotonic() - t0
    finally:
        proxy.remove(rule)
    problems = crashes.verdict(trials.observe(), allowed=[new], bystanders=trials.bystanders, converged=True)
    errors = [ln.get("msg", "") for ln in _log(trials.proc)[mark:] if ln.get("level") == "ERROR"]
    if errors:
        problems.append(f"{len(errors)} failed attempt(s) under latency, the first: {errors[0][:200]}")
    return problems or [
        f"{rule.hits} requests delayed {LATENCY:g}s each; the sync succeeded {took:.1f}s after the request"
    ]


EXTRA = [
    (
        check_default_throttle,
        "429 TooManyRequests without Retry-After on an apply",
        "sent again after the default 1s wait; the sync succeeds",
        "sent again after",
    ),
    (
        check_latency,
        f"{LATENCY:g}s latency added to every request",
        "the sync succeeds (slower), nothing fails, live = git",
        "requests delayed",
    ),
]


def test_api_faults_against_the_controller(
    env: Env, proxy: faultproxy.FaultProxy, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    via = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
    trials = FaultTrials(env=env, via=via, namespace=namespace, repo=git_repo, tmp=tmp_path, name=NAME)
    revs = crashes.revisions("A", *(f"F{i}" for i in range(len(SCENARIOS) + 1 + len(EXTRA))))
    sha = trials.commit(revs[0], None)
    watch = watch_rules(proxy)
    trials.start("--request-timeout", f"{REQUEST_TIMEOUT}s")
    trials.create(interval="1h")  # only a request, a retry or the drift watch syncs it
    failures = []
    try:
        trials.applied(sha)
        said = check_watch_resumed(trials, proxy, revs[0])
        for r in watch:
            proxy.remove(r)
        reliability.record(
            area="api-server",
            fault="drift watch: stream ended by the server, then 410 Gone on the resumed watch",
            expected="the controller relists and watches again; a hand edit is still corrected at once",
            observed="; ".join(said),
            passed=said[0].startswith("relisted"),
        )
        failures += [] if said[0].startswith("relisted") else said
        steps = list(pairwise(revs))
        for sc, (old, new) in zip(SCENARIOS, steps[: len(SCENARIOS)], strict=True):
            problems = trials.trial(proxy, sc, old, new)
            failures += [f"{sc.fault}: {p}" for p in problems]
            reliability.record(
                area="api-server",
                fault=sc.fault,
                expected=f"Ready=False reason {sc.reason}, last good revision live, nothing pruned, "
                "0 orphans; converges once the fault ends",
                observed="; ".join(problems or sc.extra),
                passed=not problems,
                lost=crashes.lost(trials.seen, new),
            )
        old, new = steps[len(SCENARIOS)]
        said = check_throttle(trials, proxy, old, new)
        ok = said[0].startswith("sent again after")
        failures += [] if ok else said
        reliability.record(
            area="api-server",
            fault=f"429 TooManyRequests with Retry-After {RETRY_AFTER:g}s on an apply",
            expected="the request is sent again no sooner than Retry-After; the sync succeeds",
            observed="; ".join(said),
            passed=ok,
        )
        for (check, fault, expected, good), (old, new) in zip(EXTRA, steps[len(SCENARIOS) + 1 :], strict=True):
            said = check(trials, proxy, old, new)
            ok = len(said) == 1 and good in said[0]
            failures += [] if ok else [f"{fault}: {p}" for p in said]
            reliability.record(
                area="api-server",
                fault=fault,
                expected=expected,
                observed="; ".join(said),
                passed=ok,
                lost=crashes.lost(trials.observe(), new),
            )
    finally:
        trials.stop()
    assert not failures, failures


STATUS_FAULT = "500 InternalError on every write of the GitSync's status subresource during a sync"


def test_status_unwritable_during_a_sync(
    env: Env, proxy: faultproxy.FaultProxy, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    """The status subresource answers 500 while a revision is synced: the revision is applied (live =
    git) but the status cannot say so. Once status can be written again it must say Ready at that
    revision on its own, without a new commit, a request or the next interval (1h here)."""
    via = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
    trials = crashes.Controlled(env=env, via=via, namespace=namespace, repo=git_repo, tmp=tmp_path, name=NAME)
    old, new = crashes.revisions("A", "B", first=3, keep=2, add=1)
    sha = trials.commit(old, None)
    trials.start("--request-timeout", f"{REQUEST_TIMEOUT}s")
    trials.create(interval="1h")
    status = rf"/apis/{crashes.GROUP}/v1/namespaces/{namespace}/gitsyncs/{NAME}/status$"
    try:
        trials.applied(sha)
        rule = proxy.add(Rule("PATCH|PUT", status, Fault.STATUS, status=500))
        try:
            sha = trials.commit(new, old)
            t0 = time.monotonic()
            trials.request()
            crashes.wait_for(lambda: trials.observe().ours == dict(new.objects), 30, "the new revision live")
            crashes.wait_for(lambda: rule.hits >= 1, 30, "a status write refused")
            applied_in = time.monotonic() - t0
        finally:
            proxy.remove(rule)
        problems = crashes.verdict(trials.observe(), allowed=[new], bystanders=trials.bystanders, converged=True)
        t0 = time.monotonic()
        try:
            trials.applied(sha, timeout=3)
            said = f"status Ready at the new revision {time.monotonic() - t0:.1f}s after the fault ended"
        except AssertionError:
            last = trials.status().get("lastAppliedRevision", "")
            problems.append(f"3s after the fault ended the status still says {last} (interval 1h, retryInterval 1s)")
            said = ""
        reliability.record(
            area="api-server",
            fault=STATUS_FAULT,
            expected="the revision is applied; once status can be written it says Ready at that revision on its own",
            observed="; ".join(problems)
            or f"applied {applied_in:.1f}s after the request while {rule.hits} status write(s) got 500; {said}",
            passed=not problems,
            lost=crashes.lost(trials.observe(), new),
        )
        assert not problems, problems
    finally:
        trials.stop()


LIST_FAULT = "404 NotFound on the LIST of live objects of a served kind (plan)"


def test_list_not_found_during_a_sync(
    env: Env, proxy: faultproxy.FaultProxy, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    """The LIST of live ConfigMaps answered 404 (a proxy or an aggregation layer in front of the
    API server; the kind is served all along). Whether the sync then fails or goes on, nothing of
    ours may be orphaned (labelled ours, missing from the inventory: no later prune would find it),
    and once the LIST answers again the sync converges: live = git, inventory = live."""
    via = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
    trials = crashes.Controlled(env=env, via=via, namespace=namespace, repo=git_repo, tmp=tmp_path, name=NAME)
    old, new = crashes.revisions("A", "B", first=3, keep=2, add=1)
    sha = trials.commit(old, None)
    trials.start("--request-timeout", f"{REQUEST_TIMEOUT}s")
    trials.create(interval="1h")
    try:
        trials.applied(sha)
        rule = proxy.add(
            Rule("GET", rf"/api/v1/namespaces/{namespace}/configmaps$", Fault.STATUS, when=_list, status=404)
        )
        try:
            sha = trials.commit(new, old)
            trials.request()

            def settled() -> str:
                st, cond = trials.status(), trials.ready_condition()
                if sha not in str(st.get("lastAttemptedRevision", "")) or cond.get("reason") == "Progressing":
                    return ""
                return "applied" if sha in str(st.get("lastAppliedRevision", "")) else str(cond.get("reason", ""))

            outcome = crashes.wait_for(settled, 30, "the sync to end")
            cond = trials.ready_condition()
            seen = trials.observe()
        finally:
            proxy.remove(rule)
        problems = crashes.verdict(seen, allowed=[old, new], bystanders=trials.bystanders, converged=False)
        trials.request()
        try:
            crashes.wait_for(lambda: not crashes.verdict(trials.observe(), allowed=[new], bystanders=trials.bystanders,
                                                         converged=True), 3, "convergence")  # fmt: skip
        except AssertionError:
            converged = trials.observe()
            problems += [
                "after the fault: " + p
                for p in crashes.verdict(converged, allowed=[new], bystanders=trials.bystanders, converged=True)
            ]
        said = "the sync went on" if outcome == "applied" else f"Ready=False {outcome}: {_message(cond)[:160]}"
        reliability.record(
            area="api-server",
            fault=LIST_FAULT,
            expected="no orphan, nothing pruned that git still has; converges once the LIST answers again",
            observed=f"{said}; " + ("; ".join(problems) or "0 orphans; converged once the LIST answered again"),
            passed=not problems,
            lost=crashes.lost(trials.observe(), new),
        )
        assert not problems, problems
    finally:
        trials.stop()


APIREG = "/apis/apiregistration.k8s.io/v1/apiservices"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _widget_crd(group: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1beta1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}],
        },
    }


def test_apiservice_unavailable_inside_a_sync(
    env: Env, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    """The runbook's row `APIService … is unavailable`: an aggregated API whose backend is down is
    named, only its kinds fail, nothing of the revision is written or pruned; once the API is
    served again (here: the APIService replaced by a CRD of the same group and version) the
    controller converges without a restart."""
    kube, ns = env.kube, namespace
    group = f"{ns}.crash.example"
    name = f"v1beta1.{group}"
    kube.request(
        "POST",
        APIREG,
        body={
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "version": "v1beta1",
                "service": {"namespace": ns, "name": "no-such-backend", "port": 443},
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
            },
        },
    )
    trials = crashes.Controlled(
        env=env, via=env.cluster.kubeconfig, namespace=ns, repo=git_repo, tmp=tmp_path, name=NAME
    )
    widget = {"apiVersion": f"{group}/v1beta1", "kind": "Widget", "metadata": {"name": "w", "namespace": ns}}
    try:
        crashes.wait_for(lambda: _available(kube, name) == "False", 30, f"APIService {name} Available=False")
        a = Revision("A", {"k0": "A", "k1": "A"})
        sha_a = git_repo.commit(a.files(namespace=ns, path="app", previous=None), "A")
        trials.start()
        trials.create(interval="1h")
        trials.applied(sha_a)
        b = Revision("B", {"k0": "B"})
        files = b.files(namespace=ns, path="app", previous=a)
        files["app/w.yaml"] = json.dumps(widget)
        files["app/kustomization.yaml"] = "resources:\n  - k0.yaml\n  - w.yaml\n"
        sha_b = git_repo.commit(files, "B")
        trials.request()
        cond = trials.failed(sha_b)
        seen = trials.observe()
        problems = []
        if not re.search(rf"APIService {re.escape(name)} is unavailable", cond.get("message", "")):
            problems.append(f"Ready message does not name the APIService: {cond.get('message')!r}")
        if seen.ours != dict(a.objects):
            problems.append(f"live {seen.ours} is not the last good revision {dict(a.objects)}")
        if not trials.status().get("lastAppliedRevision", "").endswith(sha_a):
            problems.append("lastAppliedRevision moved")
        said = f"Ready=False {cond.get('reason')}: {_message(cond)[:220]}"
        # the fault ends: the group is served again (by a CRD now)
        kube.request("DELETE", f"{APIREG}/{name}")
        kube.request("POST", CRDS, body=_widget_crd(group))
        t0 = time.monotonic()
        trials.applied(sha_b, timeout=60)
        converged = trials.observe()
        problems += crashes.verdict(converged, allowed=[b], bystanders=trials.bystanders, converged=True)
        if kube.get_or_none(f"/apis/{group}/v1beta1/namespaces/{ns}/widgets/w") is None:
            problems.append("the Widget was not applied once its API was served")
        reliability.record(
            area="api-server",
            fault="APIService of a kind in the revision unavailable (its Service has no backend) inside a sync",
            expected="Ready=False naming the APIService (runbook row), nothing applied or pruned, last good "
            "revision live; converges once the group is served again, without a restart",
            observed="; ".join(problems) or f"{said}; converged {time.monotonic() - t0:.1f}s after the API came back",
            passed=not problems,
            lost=crashes.lost(converged, b),
        )
        assert not problems, problems
    finally:
        trials.stop()
        for path in (f"{APIREG}/{name}", f"{CRDS}/widgets.{group}"):
            try:
                kube.request("DELETE", path)
            except KubeError as e:
                if not e.not_found:
                    raise


def _available(kube: Any, name: str) -> str:
    obj = kube.get_or_none(f"{APIREG}/{name}") or {}
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((str(c["status"]) for c in conds if c["type"] == "Available"), "")


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_killed_mid_apply(
    component: str, env: Env, namespace: str, git_repo: Any, tmp_path: Path, reliability: Any
) -> None:
    """SIGKILL the API server (or etcd) while the controller applies a revision, start it again:
    the sync fails by reason, nothing is pruned on a guess, and it converges after the restart.
    The controller talks to the API server directly here (a refused connection, not a proxy's
    answer), slowed to 5 requests a second so the kill lands among the applies. The shared
    control plane is restored and ready before the test ends."""
    cluster, ns = env.cluster, namespace
    trials = crashes.Controlled(env=env, via=cluster.kubeconfig, namespace=ns, repo=git_repo, tmp=tmp_path, name=NAME)
    old, new = crashes.revisions("A", "B")
    sha = trials.commit(old, None)
    proc = trials.start("--kube-api-qps", "5", "--kube-api-burst", "1", "--request-timeout", f"{REQUEST_TIMEOUT}s")
    trials.create(interval="1h")
    try:
        trials.applied(sha, timeout=120)
        sha = trials.commit(new, old)
        trials.request()
        created = [n for n in new.objects if n not in old.objects]

        def applying() -> bool:
            live = env.kube.get(f"/api/v1/namespaces/{ns}/configmaps")["items"]
            return any(i["metadata"]["name"] in created for i in live)

        crashes.wait_for(applying, 60, "the first object of the new revision", interval=0.05)
        down_at = time.monotonic()
        cluster.kill(component)
        time.sleep(OUTAGE)  # longer than --request-timeout: the controller meets the outage
        cluster.restart(component)
        cluster.ready()
        outage = time.monotonic() - down_at
        trials.applied(sha, timeout=120)
        seen = trials.observe()
        problems = crashes.verdict(seen, allowed=[new], bystanders=trials.bystanders, converged=True)
        lines = [line for line in _log(proc) if line.get("level") == "ERROR"]
        errors = [line for line in lines if line.get("reason") and line.get("revision", "").endswith(sha)]
        if not errors:
            problems.append(f"no ERROR line with a reason for the failed sync of {sha[:8]}: {lines}")
        first = errors[0] if errors else {"reason": "", "msg": ""}
        text = _message({"message": first["msg"]})[:200]
        said = f"{len(errors)} failed attempt(s), the first: {first['reason']}: {text}"
        reliability.record(
            area="api-server",
            fault=f"{component} SIGKILLed mid-apply, started again {outage:.1f}s later",
            expected="the sync fails by reason (ERROR line), nothing pruned on a guess; converges after the "
            "restart with live = git, inventory = live, 0 orphans",
            observed="; ".join(problems) or f"{said}; converged after the restart",
            passed=not problems,
            lost=crashes.lost(seen, new),
        )
        assert not problems, problems
    finally:
        trials.stop()
        if not cluster._alive(component):
            cluster.restart(component)
        cluster.ready()


def _log(proc: crashes.Proc) -> list[dict[str, Any]]:
    out = []
    for line in proc.log.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
