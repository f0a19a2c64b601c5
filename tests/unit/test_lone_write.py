"""Which plan's only write may go without a dry run (preflight.lone_write): one that cannot be partial."""

from __future__ import annotations

from typing import Any

from reconciler.sync.changeset import Action
from reconciler.sync.objects import FORCE_ANNOTATION, OWNER_LABEL, ObjectId
from reconciler.sync.plan import Item, Plan
from reconciler.sync.preflight import lone_write

OWNER = "apps.web"


def obj(
    name: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "shop", "labels": labels or {}}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": name}}


def item(name: str, action: Action, *, live_owner: str | None = OWNER, **kw: Any) -> Item:
    live = obj(name, labels={OWNER_LABEL: live_owner} if live_owner else {}) if action is Action.CONFIGURE else None
    return Item(
        oid=ObjectId("", "ConfigMap", "shop", name),
        action=action,
        source=f"{name}.yaml (document 1)",
        desired=kw.pop("desired", obj(name, labels={OWNER_LABEL: OWNER})),
        live=live,
        **kw,
    )


def test_one_configure_of_an_object_of_ours_goes_without_a_dry_run() -> None:
    p = Plan(items=[item("a", Action.CONFIGURE), item("b", Action.UNCHANGED), item("c", Action.PRUNE)])
    assert lone_write(p, owner=OWNER, want_diff=False) is p.items[0]


def test_two_writes_keep_their_dry_runs() -> None:
    p = Plan(items=[item("a", Action.CONFIGURE), item("b", Action.CONFIGURE)])
    assert lone_write(p, owner=OWNER, want_diff=False) is None
    p = Plan(items=[item("a", Action.CONFIGURE), item("b", Action.CREATE)])
    assert lone_write(p, owner=OWNER, want_diff=False) is None


def test_a_create_an_adoption_a_foreign_object_or_a_forced_recreate_keeps_its_dry_run() -> None:
    assert lone_write(Plan(items=[item("a", Action.CREATE)]), owner=OWNER, want_diff=False) is None
    assert lone_write(Plan(items=[item("a", Action.CONFIGURE, adopt=True)]), owner=OWNER, want_diff=False) is None
    foreign = item("a", Action.CONFIGURE, live_owner="other.sync")
    assert lone_write(Plan(items=[foreign]), owner=OWNER, want_diff=False) is None
    unlabelled = item("a", Action.CONFIGURE, live_owner=None)
    assert lone_write(Plan(items=[unlabelled]), owner=OWNER, want_diff=False) is None
    forced = item(
        "a", Action.CONFIGURE, desired=obj("a", labels={OWNER_LABEL: OWNER}, annotations={FORCE_ANNOTATION: "enabled"})
    )
    assert lone_write(Plan(items=[forced]), owner=OWNER, want_diff=False) is None
    assert lone_write(Plan(items=[item("a", Action.CONFIGURE, deferred=True)]), owner=OWNER, want_diff=False) is None


def test_the_cli_wants_the_dry_run_s_diff() -> None:
    assert lone_write(Plan(items=[item("a", Action.CONFIGURE)]), owner=OWNER, want_diff=True) is None


def test_no_write_at_all_is_not_a_lone_write() -> None:
    assert (
        lone_write(Plan(items=[item("a", Action.UNCHANGED), item("b", Action.PRUNE)]), owner=OWNER, want_diff=False)
        is None
    )
