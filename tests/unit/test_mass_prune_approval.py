"""The controller's one-shot, revision-bound approval of a mass prune (issue 17).

Pure parts only: which annotation values approve which revision, what the guard says to each
entry point, that the pipeline lifts the guard for exactly the approved revision (and records
it), and that a new approval wakes the controller. The real controller is checked in
tests/integration/test_mass_prune_approval_run.py.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from pipeline_fakes import REVISION, FakeCluster, FakeSteps, oid

from reconciler.gitsync import massprune
from reconciler.gitsync.errors import PruneRefusedError, StageFailedError
from reconciler.gitsync.loop import Controller
from reconciler.gitsync.pipeline import sync_revision
from reconciler.gitsync.results import Stage, SyncOptions
from reconciler.gitsync.spec import ALLOW_MASS_PRUNE
from reconciler.sync import inventory
from reconciler.sync.changeset import Action
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item, Plan
from reconciler.sync.prune import MIN_SHA_PREFIX, Guard, approves, judge

SHA = "0123456789abcdef0123456789abcdef01234567"
GIT = f"main@sha1:{SHA}"
DIGEST = "ab" * 32
BUCKET = f"sha256:{DIGEST}"
OCI = f"v1.2.0@sha256:{DIGEST}"


# --- which values approve which revision ---------------------------------------------------


@pytest.mark.parametrize(
    ("approval", "revision"),
    [
        (GIT, GIT),  # the full revision string
        (SHA, GIT),  # the 40-hex sha, as `git log` shows it
        (f"sha1:{SHA}", GIT),  # the digest with its algorithm
        (SHA[:MIN_SHA_PREFIX], GIT),  # a short sha, as `git log --oneline` shows it
        (SHA.upper(), GIT),  # hex digits in either case
        (f"  {SHA}\n", GIT),  # whitespace around a pasted value
        (f"sha1:{SHA}", f"sha1:{SHA}"),  # a bare commit (ref: {commit: ...})
        (BUCKET, BUCKET),  # a bucket's content digest
        (DIGEST, BUCKET),
        (DIGEST[:12], BUCKET),
        (BUCKET, OCI),
        (OCI, OCI),
    ],
)
def test_an_approval_names_its_revision(approval: str, revision: str) -> None:
    assert approves(approval, revision)


@pytest.mark.parametrize(
    ("approval", "revision"),
    [
        ("", GIT),
        ("true", GIT),  # a standing "allow" is not an approval: it names no revision
        ("yes", GIT),
        ("main", GIT),  # a branch moves: not bound to what was looked at
        (SHA[: MIN_SHA_PREFIX - 1], GIT),  # too short to name one commit
        ("f" * 40, GIT),  # another commit
        (f"main@sha1:{'f' * 40}", GIT),
        (f"other@sha1:{SHA}", GIT),  # the full string must be exact
        (f"sha256:{SHA}", GIT),  # the wrong algorithm
        (f"sha1:{DIGEST}", BUCKET),
        (f"{SHA}x", GIT),
        (SHA, ""),  # no revision (nothing fetched): nothing is approved
        (DIGEST[1:20], BUCKET),  # the middle of a digest, not its prefix
    ],
)
def test_anything_else_approves_nothing(approval: str, revision: str) -> None:
    assert not approves(approval, revision)


# --- the guard's verdict ------------------------------------------------------------------


def _plan(*, prune: int, keep: int) -> Plan:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "app"}}
    items = [Item(oid=oid(f"old-{i}"), action=Action.PRUNE, source="inventory", live=cm) for i in range(prune)]
    items += [
        Item(oid=ObjectId("", "ConfigMap", "app", f"cur-{i}"), action=Action.UNCHANGED, source="a.yaml", desired=cm)
        for i in range(keep)
    ]
    return Plan(items=items)


def test_the_cli_is_told_its_flag() -> None:
    refusal = judge(_plan(prune=6, keep=0), 6, guard=Guard(), revision=GIT).refusal
    assert refusal is not None
    assert refusal.endswith("; use --allow-mass-prune if this is intended")
    assert ALLOW_MASS_PRUNE not in refusal


def test_the_controller_is_told_the_annotation_its_exact_value_and_the_command() -> None:
    obj = {"metadata": {"namespace": "team", "name": "apps"}}
    refusal = judge(_plan(prune=6, keep=2), 8, guard=massprune.guard(obj), revision=GIT).refusal
    assert refusal is not None
    assert refusal.startswith("refusing to prune 6 of 8 objects (75% > 50%); ")
    assert f"{ALLOW_MASS_PRUNE}={SHA}" in refusal
    assert f"kubectl annotate gitsync -n team apps {ALLOW_MASS_PRUNE}={SHA} --overwrite" in refusal
    assert "--allow-mass-prune" not in refusal


def test_the_approval_lifts_the_guard_for_its_revision_only() -> None:
    p = _plan(prune=6, keep=0)
    approved = Guard(approval=SHA)
    assert judge(p, 6, guard=approved, revision=GIT).refusal is None
    assert judge(p, 6, guard=approved, revision=GIT).approved
    later = judge(p, 6, guard=approved, revision=f"main@sha1:{'f' * 40}")
    assert later.refusal is not None
    assert not later.approved
    assert f"the approval in place, {SHA!r}, is for another revision" in later.refusal
    vague = judge(p, 6, guard=Guard(approval="true"), revision=GIT).refusal
    huge = judge(p, 6, guard=Guard(approval="x" * 300_000), revision=GIT).refusal
    assert huge is not None
    assert len(huge) < 1000, "a huge annotation value is echoed whole"
    assert vague is not None
    assert "the approval in place, 'true', names no revision: it must be a sha" in vague


def test_an_approval_is_not_used_when_the_guard_would_not_refuse() -> None:
    verdict = judge(_plan(prune=1, keep=9), 10, guard=Guard(approval=SHA), revision=GIT)
    assert (verdict.refusal, verdict.approved) == (None, False)  # nothing to record: not a mass prune


def test_the_value_to_set_is_the_sha_for_git_and_the_digest_otherwise() -> None:
    assert massprune.approval_value(GIT) == SHA
    assert massprune.approval_value(f"sha1:{SHA}") == SHA
    assert massprune.approval_value(BUCKET) == BUCKET
    assert massprune.approval_value(OCI) == BUCKET
    for revision in (GIT, BUCKET, OCI, f"sha1:{SHA}"):  # whatever the message says to set, approves
        assert approves(massprune.approval_value(revision), revision)


def test_the_guard_reads_the_annotation_of_its_gitsync() -> None:
    obj: dict[str, Any] = {"metadata": {"namespace": "team", "name": "apps", "annotations": {ALLOW_MASS_PRUNE: SHA}}}
    g = massprune.guard(obj)
    assert (g.approval, g.max_ratio, g.allow_mass_prune) == (SHA, 0.5, False)
    assert massprune.guard({"metadata": {"namespace": "team", "name": "apps"}}).approval == ""


# --- the pipeline -------------------------------------------------------------------------


def _run(approval: str) -> tuple[list[str], Any]:
    calls: list[str] = []
    stored = [inventory.Entry(oid(n), "v1", "", "") for n in ("x", "y")]
    cluster = FakeCluster(calls, stored=stored, gone=["x", "y"])
    options = SyncOptions("apps", "team", guard=massprune.guard(_obj(approval)))
    try:
        return calls, sync_revision(steps=FakeSteps(calls, manifests=[]), cluster=cluster, options=options)
    except StageFailedError as e:
        return calls, e


def _obj(approval: str) -> dict[str, Any]:
    notes = {ALLOW_MASS_PRUNE: approval} if approval else {}
    return {"metadata": {"namespace": "team", "name": "apps", "annotations": notes}}


def test_a_refused_revision_writes_nothing_and_says_prune_refused() -> None:
    for approval in ("", "f" * 40, "true"):
        calls, e = _run(approval)
        assert isinstance(e, PruneRefusedError), e
        assert (e.stage, e.reason, e.event_reason, e.stalled) == (Stage.GUARD, "PruneRefused", "PruneRefused", False)
        assert e.message.startswith("prune guard failed: refusing to prune all 2 objects")
        assert f"{ALLOW_MASS_PRUNE}={REVISION.rpartition(':')[2]}" in e.message
        assert not {"write_ahead", "apply", "prune", "record"} & set(calls), calls


def test_the_approved_revision_prunes_and_records_the_approval() -> None:
    _calls, res = _run(REVISION.rpartition(":")[2])
    assert not isinstance(res, Exception), res
    assert res.ok
    assert res.approved_mass_prune
    assert res.pruned is not None
    assert {i.oid.name for i in res.pruned.deleted} == {"x", "y"}
    assert massprune.approved_note(REVISION) == f"; mass prune approved by annotation {ALLOW_MASS_PRUNE} for {REVISION}"


# --- the controller wakes up for a new approval --------------------------------------------


def _gitsync(approval: str | None, generation: int = 1) -> dict[str, Any]:
    notes = {} if approval is None else {ALLOW_MASS_PRUNE: approval}
    return {"metadata": {"name": "apps", "namespace": "team", "generation": generation, "annotations": notes}}


@pytest.mark.parametrize(
    ("old", "new", "wanted"),
    [
        (None, SHA, True),  # set
        ("f" * 40, SHA, True),  # changed
        (SHA, SHA, False),  # unchanged (our own status writes)
        (SHA, None, False),  # removed: nothing to approve
        (SHA, "", False),
    ],
)
def test_a_new_approval_reconciles_at_once(old: str | None, new: str | None, wanted: bool) -> None:
    wants_now = Controller._wants_now  # pure: reads only the two objects
    assert wants_now(cast(Controller, None), _gitsync(new), _gitsync(old)) is wanted


# --- reconciler run --max-prune-ratio ------------------------------------------------------


def test_run_takes_max_prune_ratio_to_every_gitsyncs_guard() -> None:
    from types import SimpleNamespace

    import click

    from reconciler.cli import run
    from reconciler.gitsync.reconcile import Reconciler
    from reconciler.gitsync.spec import parse

    ctx = run.run.make_context("run", ["--max-prune-ratio", "0.2"])
    opts = run._controller_options(ctx.params, webhook_secret=b"", eks=None)
    assert opts.max_prune_ratio == 0.2
    assert run.run.make_context("run", []).params["max_prune_ratio"] == 0.5
    with pytest.raises(click.BadParameter):
        run.run.make_context("run", ["--max-prune-ratio", "1.5"])
    obj = _gitsync(SHA) | {"spec": {"source": {"git": {"url": "https://git.example/fleet.git"}}}}
    reconciler = cast(Reconciler, SimpleNamespace(max_prune_ratio=opts.max_prune_ratio))
    options = Reconciler._options(reconciler, obj, parse(obj), policy_mode="enforce")
    assert (options.guard.max_ratio, options.guard.approval) == (0.2, SHA)
    other = f"main@sha1:{'f' * 40}"  # not the approved one
    refusal = judge(_plan(prune=5, keep=15), 20, guard=options.guard, revision=other).refusal  # 25% > 20%
    assert refusal is not None
    assert refusal.startswith("refusing to prune 5 of 20 objects (25% > 20%)")
    assert judge(_plan(prune=5, keep=15), 20, guard=options.guard, revision=GIT).approved
