"""A chart's hooks and CRDs in the one pipeline, with fakes: pre-hooks before anything is written,
post-hooks after health, install vs upgrade by the inventory, a failing pre-hook stops the sync,
no hooks on a no-op; and the CRD policies as the plan sees them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pipeline_fakes import REVISION, FakeCluster, FakeSteps, cm, oid
from test_pipeline import _policies

from reconciler.gitsync.errors import HookFailedError, PolicyViolationError
from reconciler.gitsync.helmrender import HelmRender
from reconciler.gitsync.helmspec import CRDPolicy, Phase
from reconciler.gitsync.pipeline import sync_revision
from reconciler.gitsync.rendered import Rendered
from reconciler.gitsync.results import Stage, SyncOptions
from reconciler.render.helm import Hook
from reconciler.render.manifests import Manifest
from reconciler.source.charts import ChartArtifact
from reconciler.sync import inventory
from reconciler.sync.objects import DISABLED, RECONCILE_ANNOTATION, ObjectId

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.demo.example.com"},
}


def hook(name: str, *events: str) -> Hook:
    obj: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}}
    return Hook(obj=obj, events=frozenset(events), weight=0, delete_policies=frozenset(), source="t.yaml")


def chart(*, install: CRDPolicy = CRDPolicy.CREATE, upgrade: CRDPolicy = CRDPolicy.SKIP) -> HelmRender:
    return HelmRender(
        chart=ChartArtifact(name="demo", version="0.1.0", digest="sha256:" + "a" * 64, path=Path(), source="charts"),
        crds=(Manifest(obj=CRD, file="crds/w.yaml", doc=0),),
        manifests=(cm("a"),),
        hooks=(
            hook("migrate", "pre-install", "pre-upgrade"),
            hook("seed", "pre-install"),
            hook("announce", "post-install", "post-upgrade"),
        ),
        skipped=(),
        install=Phase(crds=install),
        upgrade=Phase(crds=upgrade),
        cached=False,
    )


def stored(*names: str) -> list[inventory.Entry]:
    return [inventory.Entry(oid(n), "v1", "d") for n in names]


def run(calls: list[str], cluster: FakeCluster, **options: Any) -> None:
    steps = FakeSteps(calls, chart=chart())
    res = sync_revision(steps=steps, cluster=cluster, options=SyncOptions("apps", "team", **options))
    assert res.chart == "demo@0.1.0@sha256:" + "a" * 64


def test_install_runs_pre_install_hooks_before_any_write_and_post_install_after_health() -> None:
    calls: list[str] = []
    run(calls, FakeCluster(calls), wait=True)
    tail = calls[calls.index("preflight") + 1 :]
    assert tail == [
        "pre-install:migrate,seed",
        "write_ahead",
        "apply",
        "prune",
        "record",
        "health",
        "post-install:announce",
    ]


def test_a_non_empty_inventory_is_an_upgrade() -> None:
    calls: list[str] = []
    run(calls, FakeCluster(calls, stored=stored("old")))
    assert "pre-upgrade:migrate" in calls
    assert calls[-1] == "post-upgrade:announce"


def test_a_failing_pre_hook_stops_the_sync_before_anything_is_written() -> None:
    calls: list[str] = []
    cluster = FakeCluster(
        calls, errors={"pre-install:migrate,seed": ["hook Job/app/migrate (pre-install): Job failed"]}
    )
    with pytest.raises(HookFailedError) as e:
        run(calls, cluster)
    assert e.value.stage is Stage.PRE_HOOKS
    assert e.value.reason == "HookFailed"
    assert e.value.message == "pre-hooks failed: hook Job/app/migrate (pre-install): Job failed"
    assert not {"write_ahead", "apply", "prune", "record"} & set(calls)


def test_a_dry_run_runs_no_hooks() -> None:
    calls: list[str] = []
    run(calls, FakeCluster(calls), dry_run=True)
    assert not [c for c in calls if ":" in c]


def test_no_hooks_when_the_sync_changes_nothing() -> None:
    calls: list[str] = []
    cluster = FakeCluster(calls, stored=stored("a"))
    steps = FakeSteps(calls, manifests=[], chart=chart(install=CRDPolicy.SKIP))
    sync_revision(steps=steps, cluster=cluster, options=SyncOptions("apps", "team"))
    assert not [c for c in calls if ":" in c], calls


def crd_ids(policy_install: CRDPolicy, policy_upgrade: CRDPolicy, previous: inventory.Inventory) -> list[str]:
    r = Rendered(manifests=[cm("a")], chart=chart(install=policy_install, upgrade=policy_upgrade))
    out = []
    for m in r.staged(previous).manifests:
        if m.obj["kind"] == "CustomResourceDefinition":
            disabled = (m.obj["metadata"].get("annotations") or {}).get(RECONCILE_ANNOTATION) == DISABLED
            out.append("create-only" if disabled else "apply")
    return out


def test_crd_policies_map_onto_the_plan() -> None:
    empty = inventory.Inventory()
    crd_oid = ObjectId.of(CRD)
    with_crd = inventory.Inventory(REVISION, {crd_oid: inventory.Entry(crd_oid, "v1", "d")})
    without_crd = inventory.Inventory(REVISION, {oid("a"): inventory.Entry(oid("a"), "v1", "d")})
    assert crd_ids(CRDPolicy.CREATE, CRDPolicy.SKIP, empty) == ["create-only"]  # install: created when missing
    assert crd_ids(CRDPolicy.SKIP, CRDPolicy.SKIP, empty) == []  # install with Skip: not at all
    assert crd_ids(CRDPolicy.CREATE, CRDPolicy.SKIP, with_crd) == ["create-only"]  # upgrade: kept, never pruned
    assert crd_ids(CRDPolicy.CREATE, CRDPolicy.SKIP, without_crd) == []  # upgrade Skip: none created
    assert crd_ids(CRDPolicy.CREATE, CRDPolicy.CREATE_REPLACE, with_crd) == ["apply"]
    assert chart().objects(upgrade=False)[0].obj is CRD, "the render's own objects are not changed"


def test_the_policy_gate_sees_a_chart_hook_and_refuses_the_chart_before_any_hook_runs(tmp_path: Path) -> None:
    calls: list[str] = []
    bad_hook = Hook(
        obj=cm("bad").obj, events=frozenset({"pre-install"}), weight=0, delete_policies=frozenset(), source="t"
    )
    steps = FakeSteps(calls, chart=replace(chart(), hooks=(bad_hook,)), policy_set=_policies(tmp_path, "Deny"))
    with pytest.raises(PolicyViolationError):
        sync_revision(steps=steps, cluster=FakeCluster(calls), options=SyncOptions("apps", "team"))
    assert [v.policy for v in steps.reported] == ["no-bad"]
    assert "load" not in calls
    assert not [c for c in calls if ":" in c]
