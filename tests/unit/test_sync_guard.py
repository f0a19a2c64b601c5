"""The mass-prune guard: pruning everything, or too large a share, needs --allow-mass-prune."""

from __future__ import annotations

import pytest

from reconciler.sync.changeset import Action
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item, Plan
from reconciler.sync.prune import MIN_GUARDED, Guard, check_guard

DEFAULT = Guard()


def cm(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "shop"}}


def make_plan(
    *, prune: int = 0, keep: int = 0, action: Action = Action.UNCHANGED, prune_skipped: int = 0, create: int = 0
) -> Plan:
    """``prune`` orphans, ``keep`` desired objects with ``action``, ``create`` new ones,
    ``prune_skipped`` orphans annotated ``prune: disabled``."""
    items: list[Item] = []
    for i in range(prune):
        oid = ObjectId("", "ConfigMap", "shop", f"old-{i}")
        items.append(Item(oid=oid, action=Action.PRUNE, source="inventory", live=cm(oid.name)))
    for i in range(prune_skipped):
        oid = ObjectId("", "ConfigMap", "shop", f"kept-{i}")
        items.append(Item(oid=oid, action=Action.SKIP, source="inventory", live=cm(oid.name), reason="prune: disabled"))
    for i in range(keep):
        oid = ObjectId("", "ConfigMap", "shop", f"cur-{i}")
        items.append(Item(oid=oid, action=action, source=f"app.yaml (document {i + 1})", desired=cm(oid.name)))
    for i in range(create):
        oid = ObjectId("", "ConfigMap", "shop", f"new-{i}")
        items.append(Item(oid=oid, action=Action.CREATE, source=f"new.yaml (document {i + 1})", desired=cm(oid.name)))
    return Plan(items=items)


def test_plan_helper_builds_what_it_says() -> None:
    p = make_plan(prune=3, keep=2, prune_skipped=1, create=4)
    assert len(p.by_action(Action.PRUNE)) == 3
    assert sum(1 for i in p.items if i.desired is not None) == 6
    assert all(i.desired is None for i in p.by_action(Action.PRUNE))


def test_min_guarded_is_five() -> None:
    assert MIN_GUARDED == 5


# --- allowed -----------------------------------------------------------------------------


def test_nothing_to_prune_is_allowed() -> None:
    assert check_guard(make_plan(keep=10), 10, DEFAULT) is None


def test_empty_plan_and_empty_inventory_is_allowed() -> None:
    assert check_guard(Plan(items=[]), 0, DEFAULT) is None


def test_empty_inventory_is_allowed() -> None:
    # Nothing recorded: nothing can be a share of it (and the planner cannot produce prunes).
    assert check_guard(make_plan(prune=3), 0, DEFAULT) is None


def test_empty_revision_with_nothing_to_prune_is_allowed() -> None:
    assert check_guard(Plan(items=[]), 10, DEFAULT) is None


def test_small_prune_is_allowed() -> None:
    assert check_guard(make_plan(prune=1, keep=9), 10, DEFAULT) is None


def test_exactly_half_is_allowed() -> None:
    # The rule is "more than max_ratio": 50% of the inventory is still allowed.
    assert check_guard(make_plan(prune=5, keep=5), 10, DEFAULT) is None
    assert check_guard(make_plan(prune=50, keep=50), 100, DEFAULT) is None


def test_below_min_guarded_the_ratio_does_not_apply() -> None:
    # 4 of 5 is 80%, but four deletions are ordinary work.
    assert check_guard(make_plan(prune=4, keep=1), 5, DEFAULT) is None
    assert check_guard(make_plan(prune=2, keep=1), 3, DEFAULT) is None
    assert check_guard(make_plan(prune=MIN_GUARDED - 1, keep=1), MIN_GUARDED, DEFAULT) is None


def test_prune_disabled_orphans_are_not_counted_as_deletions() -> None:
    # 4 prunes + 6 prune-disabled orphans of a 10-object inventory: only 4 deletions.
    assert check_guard(make_plan(prune=4, prune_skipped=6, keep=1), 10, DEFAULT) is None


# --- refused: everything -----------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 10, 1000])
def test_pruning_every_inventory_entry_is_refused_at_any_size(size: int) -> None:
    # A renamed path that still renders *something* (here one new object) must not wipe the sync.
    msg = check_guard(make_plan(prune=size, create=1), size, DEFAULT)
    assert msg is not None
    assert f"refusing to prune all {size} objects" in msg
    assert "none of them is in the revision any more" in msg
    assert "--allow-mass-prune" in msg


def test_pruning_more_than_the_inventory_is_refused() -> None:
    msg = check_guard(make_plan(prune=4, keep=2), 3, DEFAULT)
    assert msg is not None
    assert "--allow-mass-prune" in msg


@pytest.mark.parametrize("n", [1, 2, 4, 5, 50])
def test_empty_revision_is_refused(n: int) -> None:
    msg = check_guard(make_plan(prune=n), n, DEFAULT)
    assert msg is not None
    assert f"refusing to prune all {n} objects" in msg
    assert "the revision has no objects at all" in msg
    assert "--allow-mass-prune" in msg


def test_empty_revision_is_refused_even_when_only_a_few_would_go() -> None:
    # 2 of a 10-object inventory are still live and ours; the rest are gone or prune-disabled.
    # The ratio would allow it; an empty revision is refused regardless.
    msg = check_guard(make_plan(prune=2, prune_skipped=3), 10, DEFAULT)
    assert msg is not None
    assert "the revision has no objects at all" in msg
    assert "--allow-mass-prune" in msg


def test_skipped_desired_objects_count_as_desired() -> None:
    # reconcile: disabled objects are still in the revision: the revision is not empty.
    assert check_guard(make_plan(prune=1, keep=9, action=Action.SKIP), 10, DEFAULT) is None


# --- refused: too large a share ----------------------------------------------------------


def test_just_over_half_is_refused() -> None:
    msg = check_guard(make_plan(prune=6, keep=4), 10, DEFAULT)
    assert msg is not None
    assert "refusing to prune 6 of 10 objects" in msg
    assert "(60% > 50%)" in msg
    assert "--allow-mass-prune" in msg


def test_five_of_six_is_refused_four_of_five_is_not() -> None:
    assert check_guard(make_plan(prune=4, keep=1), 5, DEFAULT) is None
    msg = check_guard(make_plan(prune=5, keep=1), 6, DEFAULT)
    assert msg is not None
    assert "refusing to prune 5 of 6 objects" in msg


def test_min_guarded_boundary_with_a_low_ratio() -> None:
    strict = Guard(max_ratio=0.1)
    assert check_guard(make_plan(prune=4, keep=36), 40, strict) is None  # 10%, but only 4
    msg = check_guard(make_plan(prune=5, keep=35), 40, strict)  # 12.5% > 10% and 5 deletions
    assert msg is not None
    assert "refusing to prune 5 of 40 objects" in msg
    assert "> 10%" in msg


def test_large_inventory_boundary() -> None:
    assert check_guard(make_plan(prune=500, keep=500), 1000, DEFAULT) is None
    msg = check_guard(make_plan(prune=600, keep=400), 1000, DEFAULT)
    assert msg is not None
    assert "refusing to prune 600 of 1000 objects (60% > 50%)" in msg


@pytest.mark.parametrize(
    ("n", "size", "max_ratio", "refused"),
    [
        (9, 10, 0.9, False),  # exactly the ratio
        (9, 10, 0.89, True),
        (5, 20, 0.25, False),  # exactly the ratio
        (5, 20, 0.2, True),
        (6, 20, 0.25, True),
        (5, 100, 0.0, True),  # any guarded prune refused
        (4, 100, 0.0, False),  # below MIN_GUARDED
        (9, 10, 1.0, False),
    ],
)
def test_custom_max_ratio(n: int, size: int, max_ratio: float, refused: bool) -> None:
    msg = check_guard(make_plan(prune=n, keep=size - n), size, Guard(max_ratio=max_ratio))
    assert (msg is not None) is refused
    if msg is not None:
        assert f"refusing to prune {n} of {size} objects" in msg
        assert "--allow-mass-prune" in msg


# --- allow_mass_prune --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prune", "keep", "create", "size"),
    [
        (10, 0, 0, 10),  # empty revision
        (10, 0, 3, 10),  # everything replaced
        (9, 1, 0, 10),  # 90%
        (1, 0, 0, 1),
    ],
)
def test_allow_mass_prune_always_allows(prune: int, keep: int, create: int, size: int) -> None:
    p = make_plan(prune=prune, keep=keep, create=create)
    assert check_guard(p, size, DEFAULT) is not None  # refused without the flag
    assert check_guard(p, size, Guard(allow_mass_prune=True)) is None
    assert check_guard(p, size, Guard(allow_mass_prune=True, max_ratio=0.0)) is None
