"""Issue 15's request budget, piece by piece (fakes, no API server): a quiet interval skips the plan
only when the drift watches vouch for live state; health is read from the watch's events; each
request is counted by Kubernetes verb and resource, never by name."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pipeline_fakes import REVISION, Written, gitsync

from reconciler.gitsync import inputs
from reconciler.gitsync.cluster import KubeCluster
from reconciler.gitsync.drift import Desired, DriftWatcher
from reconciler.gitsync.outcome import Outcomes
from reconciler.gitsync.results import SyncOptions
from reconciler.gitsync.spec import WEBHOOK_STAMP
from reconciler.kube.client import APPLY_PATCH, MERGE_PATCH, request_kind
from reconciler.kube.discovery import Resource
from reconciler.render.manifests import Manifest
from reconciler.report import conditions as cond
from reconciler.report.metrics import Metrics
from reconciler.sync import health, record
from reconciler.sync.apply import ObjectResult
from reconciler.sync.changeset import Action, Effect
from reconciler.sync.inventory import Entry, Inventory
from reconciler.sync.objects import OWNER_LABEL, ObjectId
from reconciler.sync.plan import Item, Plan, plan

DEPLOYMENTS = Resource(group="apps", version="v1", kind="Deployment", plural="deployments", namespaced=True)
KEY = ("team", "apps")
NOW = time.monotonic()


def deployment(*, generation: int, observed: int) -> dict[str, Any]:
    md = {"name": "web", "namespace": "prod", "generation": generation, "labels": {OWNER_LABEL: "team.apps"}}
    available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
    status = {"observedGeneration": observed, "conditions": [available]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md, "spec": {"replicas": 0}, "status": status}


# ------------------------------------------------------------------ when the plan may be skipped


def quiet(*, watched: bool, handled: str | None = None, drifted: int = 0, age: float = 60.0, same: bool = True) -> bool:
    obj = gitsync(lastHandledRequestedAt="old")
    last = ("digest", drifted, time.monotonic() - age)
    return inputs.unchanged(
        obj, interval=120.0, last=last, inputs="digest" if same else "other", handled_request=handled, watched=watched
    )


def test_a_quiet_interval_skips_the_plan_only_when_the_watches_vouch_for_live_state() -> None:
    assert quiet(watched=True)
    assert not quiet(watched=False)  # a remote target, drift mode off, a relisted kind: in full
    assert not quiet(watched=True, drifted=1)
    assert not quiet(watched=True, same=False)  # its files, variables or spec changed
    assert not quiet(watched=True, age=inputs.VERIFY_EVERY + 1)  # the safety net under the watches


def test_a_request_runs_in_full_unless_it_is_a_push_that_left_the_path_alone() -> None:
    assert not quiet(watched=True, handled="2026-12-03T10:00:00Z")  # a person asked: in full
    assert quiet(watched=True, handled="old")  # answered already: an interval like any other
    assert quiet(watched=False, handled=f"{WEBHOOK_STAMP}1", age=60.0)
    assert not quiet(watched=True, handled=f"{WEBHOOK_STAMP}1", age=600.0)  # older than the interval


def test_a_quiet_interval_writes_no_status() -> None:
    written = Written()
    outcomes = Outcomes(patch_status=written.patch_status, events=written, metrics=Metrics())
    ready = {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "Applied revision x"}
    ready["observedGeneration"], ready["lastTransitionTime"] = 3, "2026-12-03T10:00:00Z"
    status = {"conditions": [ready], "observedGeneration": 3}
    obj = gitsync(**status, lastAttemptedRevision=REVISION, lastAppliedRevision=REVISION)
    assert outcomes.unchanged(obj, revision=REVISION, extra={}).ok
    assert written.patches == []
    assert (cond.get(obj["status"]["conditions"], cond.READY) or {})["message"] == "Applied revision x"


# ------------------------------------------------------------------ what the drift watch vouches for


def watcher() -> DriftWatcher:
    w = DriftWatcher(object(), field_manager="gitops-reconciler", on_change=lambda k, d: None, stop=threading.Event())  # type: ignore[arg-type]
    w._watched.add(DEPLOYMENTS)  # no watch thread: the test plays its events
    return w


def baseline() -> dict[ObjectId, Desired]:
    obj = deployment(generation=1, observed=1)
    return {ObjectId.of(obj): Desired.after_apply(obj, obj, fields="", resource=DEPLOYMENTS)}


def test_the_watch_vouches_only_for_a_kind_listed_before_the_baseline_and_not_relisted_since() -> None:
    w = watcher()
    w.track(KEY, baseline(), complete=True)
    assert not w.pause(KEY)  # the kind was not listed yet when the baseline was set
    w._event(DEPLOYMENTS, "RELISTED", {})  # its first list
    w.track(KEY, baseline(), complete=True)
    assert w.pause(KEY)
    w.resume(KEY)
    w._event(DEPLOYMENTS, "RELISTED", {})  # a relist (410 Gone): a deletion may have gone unseen
    assert not w.pause(KEY)
    w.track(KEY, baseline(), complete=True)
    assert w.pause(KEY)
    w.resume(KEY)
    w._event(DEPLOYMENTS, "MODIFIED", deployment(generation=1, observed=1) | {"spec": {"replicas": 3}})
    assert w.drifted(KEY)
    assert not w.pause(KEY)  # drifted: in full
    assert not watcher().pause(("team", "new"))  # nothing tracked yet
    w.track(KEY, baseline(), complete=False)  # an object skipped (reconcile: disabled) or unexamined
    assert not w.pause(KEY)


# ------------------------------------------------------------------ health from the watch's events


class NoKube:
    """Any request fails the test: health must come from the events."""

    def get(self, *a: Any, **k: Any) -> Any:
        raise AssertionError("health polled the API server")


class Mapper:
    def find(self, api_version: str, kind: str) -> Resource:
        return DEPLOYMENTS


def cluster(w: DriftWatcher, applied: dict[str, Any]) -> tuple[KubeCluster, Item]:
    options = SyncOptions(name="apps", namespace="team", timeout=5.0)
    c = KubeCluster(NoKube(), Mapper(), options, watch=w)  # type: ignore[arg-type]
    item = Item(oid=ObjectId.of(applied), action=Action.CONFIGURE, source="f", desired=applied, resource=DEPLOYMENTS)
    c.applied[item.oid] = applied
    return c, item


def test_health_waits_for_the_event_of_the_applied_generation_without_a_request() -> None:
    w = watcher()
    w._event(DEPLOYMENTS, "RELISTED", {})
    w.pause(KEY)
    c, item = cluster(w, deployment(generation=2, observed=1))
    w._event(DEPLOYMENTS, "MODIFIED", deployment(generation=1, observed=1))  # an older generation: not it
    timer = threading.Timer(0.2, w._event, (DEPLOYMENTS, "MODIFIED", deployment(generation=2, observed=2)))
    timer.start()
    t0 = time.monotonic()
    states = c.health([item])
    assert states[item.oid].state is health.State.CURRENT
    assert 0.15 < time.monotonic() - t0 < 3.0


def test_health_polls_when_the_kind_is_not_watched_and_trusts_the_plan_for_what_it_left_alone() -> None:
    w = watcher()  # never listed
    w.pause(KEY)
    c, item = cluster(w, deployment(generation=2, observed=1))
    with pytest.raises(AssertionError, match="polled"):
        c.health([item])
    c.applied.clear()  # left unchanged: the plan read it Current moments ago
    item.action, item.live = Action.UNCHANGED, deployment(generation=2, observed=2)
    assert c.health([item])[item.oid].state is health.State.CURRENT


# ------------------------------------------------------------------ counting requests


@pytest.mark.parametrize(
    ("method", "path", "query", "content_type", "expected"),
    [
        ("GET", "/api/v1/namespaces/a/configmaps/x.gitsync-inventory", None, "", ("get", "configmaps")),
        ("GET", "/apis/apps/v1/namespaces/a/deployments", [("labelSelector", "l")], "", ("list", "deployments")),
        ("GET", "/apis/apps/v1/deployments", [("watch", "1")], "", ("watch", "deployments")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/x",
            [("dryRun", "All")],
            APPLY_PATCH,
            ("apply-dry-run", "deployments"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/x",
            [("force", "true")],
            APPLY_PATCH,
            ("apply", "deployments"),
        ),
        (
            "PATCH",
            "/apis/gitops.reconciler.dev/v1/namespaces/a/gitsyncs/x/status",
            None,
            MERGE_PATCH,
            ("patch", "gitsyncs/status"),
        ),
        ("POST", "/apis/events.k8s.io/v1/namespaces/a/events", None, "application/json", ("create", "events")),
        ("DELETE", "/api/v1/namespaces/gone", None, "", ("delete", "namespaces")),
    ],
)
def test_requests_are_counted_by_verb_and_resource_never_by_name(
    method: str, path: str, query: Any, content_type: str, expected: tuple[str, str]
) -> None:
    assert request_kind(method, path, query=query, content_type=content_type) == expected


# ------------------------------------------------------------------ a plan that reads only what may have changed


class ListingKube:
    """Serves the LIST of the plan from ``live`` and counts the requests."""

    def __init__(self, live: list[dict[str, Any]]) -> None:
        self.live, self.gets = live, 0

    def get(self, path: str, query: Any = None) -> dict[str, Any]:
        self.gets += 1
        return {"items": [dict(o) for o in self.live]}


def planned(kube: ListingKube, inv: Inventory, vouched: dict[ObjectId, str]) -> Item:
    manifest = Manifest(obj=deployment(generation=1, observed=1), file="app.yaml", doc=1)
    p = plan(kube, [manifest], mapper=Mapper(), inventory=inv, owner="team.apps", vouched=vouched)  # type: ignore[arg-type]
    return p.items[0]


def test_an_object_the_watch_vouches_for_is_unchanged_without_a_read_and_keeps_its_entry() -> None:
    live_obj = deployment(generation=1, observed=1)
    first = planned(ListingKube([]), Inventory(), {})  # no inventory: a create, and no LIST
    assert first.action is Action.CREATE
    entry = Entry(first.oid, "v1", first.digest, "fields-digest")
    inv = Inventory("r1", {first.oid: entry}, "uid")
    kube = ListingKube([live_obj])
    assert planned(kube, inv, {}).action in (Action.UNCHANGED, Action.CONFIGURE)
    assert kube.gets == 1  # not vouched for: read
    kube = ListingKube([live_obj])
    item = planned(kube, inv, {first.oid: first.digest})
    assert (item.action, item.live, kube.gets) == (Action.UNCHANGED, None, 0)
    assert planned(kube, inv, {first.oid: "sha256:another"}).action is not Action.UNCHANGED or kube.gets == 1
    outcome = ObjectResult(item=item, result=Effect.UNCHANGED)
    final = record.final(inv, Plan(items=[item]), outcomes=[outcome], deleted=set(), field_manager="m", revision="r2")
    assert final.entries[item.oid] == entry  # its owned-fields digest is not lost for want of a read


def test_a_baseline_left_alone_keeps_the_one_its_apply_made() -> None:
    w = watcher()
    w._event(DEPLOYMENTS, "RELISTED", {})
    obj = deployment(generation=1, observed=1)
    applied = Desired.after_apply(obj, obj, fields="", resource=DEPLOYMENTS, digest="d1", healthy=True)
    w.track(KEY, {ObjectId.of(obj): applied})
    unread = Desired.after_apply(obj, None, fields="", resource=DEPLOYMENTS, digest="d1", healthy=True)
    w.track(KEY, {ObjectId.of(obj): unread})
    assert w._tracked[KEY].objects[ObjectId.of(obj)].baseline == applied.baseline
    v = w.vouched(KEY)[ObjectId.of(obj)]
    assert v.digest == "d1"
    assert v.health is not None
    assert v.health.state is health.State.CURRENT
    w._event(DEPLOYMENTS, "MODIFIED", deployment(generation=1, observed=1) | {"status": {}})
    v = w.vouched(KEY)[ObjectId.of(obj)]
    assert v.health is not None
    assert v.health.state is not health.State.CURRENT  # the event's verdict, not the sync's
