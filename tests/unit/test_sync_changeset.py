"""The typed actions and effects keep the words users read, and compare equal to them."""

from __future__ import annotations

from reconciler.sync.changeset import APPLIED, Action, Effect


def test_actions_are_the_plan_words() -> None:
    assert [a.value for a in Action] == ["create", "configure", "unchanged", "prune", "skip"]


def test_effects_are_the_result_words_and_compare_as_strings() -> None:
    assert [e.value for e in Effect] == [
        "created",
        "configured",
        "adopted",
        "recreated",
        "unchanged",
        "skipped",
        "failed",
        "pruned",
    ]
    assert Effect.CREATED == "created"
    assert f"{Effect.PRUNED}" == "pruned"  # how a log line or the CLI prints it
    assert "created" in APPLIED  # callers that hold plain strings still find them


def test_applied_is_what_leaves_the_object_as_git_says() -> None:
    assert {"created", "configured", "adopted", "recreated", "unchanged"} == APPLIED
    assert not APPLIED & {Effect.SKIPPED, Effect.FAILED, Effect.PRUNED}
