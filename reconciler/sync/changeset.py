"""The typed names of what a sync does to one object, before and after the fact.

Like fluxcd/pkg ssa's ``changeset.go``: the plan decides an :class:`Action` per object,
and applying or pruning it has an :class:`Effect` (``ObjectResult.result``). Both are
``StrEnum`` so their values are the words users read in the CLI's output, the history and the logs, and a comparison
with the plain string (``result == "created"``) keeps working.
"""

from __future__ import annotations

import enum


class Action(enum.StrEnum):
    """What the plan decides to do with one object."""

    CREATE = "create"
    CONFIGURE = "configure"
    UNCHANGED = "unchanged"
    PRUNE = "prune"
    SKIP = "skip"


class Effect(enum.StrEnum):
    """What happened to one object once the sync applied or pruned it."""

    CREATED = "created"
    CONFIGURED = "configured"
    ADOPTED = "adopted"  # it existed without our label; now it is ours
    RECREATED = "recreated"  # deleted and created again: an immutable field changed, force enabled
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    FAILED = "failed"
    PRUNED = "pruned"


# Results after which the live object is what git says: recorded in the inventory, health-checked.
APPLIED = frozenset({Effect.CREATED, Effect.CONFIGURED, Effect.ADOPTED, Effect.RECREATED, Effect.UNCHANGED})
