"""The inventory a sync keeps: written ahead of the first write, and again after apply and prune.

The inventory is how a later sync knows what is ours to prune, so it is written twice: once
before anything is applied (every object this sync may create, so a process that dies mid-apply
still leaves a record of it) and once at the end (whatever happened: nothing applied is ever
forgotten, and the revision advances only on full success).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from reconciler.kube.client import Kube
from reconciler.sync import inventory
from reconciler.sync.apply import ObjectResult
from reconciler.sync.changeset import Action
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item, Plan

APPLIED = frozenset({"created", "configured", "adopted", "recreated", "unchanged"})


def _version(item: Item) -> str:
    assert item.desired is not None
    return str(item.desired["apiVersion"]).rpartition("/")[2]


def write_ahead(previous: inventory.Inventory, p: Plan, owner_uid: str) -> inventory.Inventory:
    """The inventory as it must be before the first write.

    Every object this sync may create is recorded first (with an unknown digest), so that
    if the process dies mid-apply the next sync still knows those objects are ours to prune;
    and an unstamped inventory is stamped with its owner before anything is applied.
    """
    entries = dict(previous.entries)
    for i in p.by_action(Action.CREATE, Action.CONFIGURE):
        last = previous.entries.get(i.oid)
        entries[i.oid] = inventory.Entry(i.oid, _version(i), last.digest if last else "", last.fields if last else "")
    return inventory.Inventory(previous.revision, entries, owner_uid or previous.owner_uid)


def final(
    ahead: inventory.Inventory,
    p: Plan,
    *,
    outcomes: Sequence[ObjectResult],
    deleted: set[ObjectId],
    field_manager: str,
    revision: str,
) -> inventory.Inventory:
    """The inventory after apply and prune: entries leave it only for a known reason.

    Dropped: objects pruned now, objects confirmed gone or no longer labelled ours, and
    objects released by ``prune: disabled``. Everything else stays — including what could
    not be examined, what a failed or skipped prune left behind, and what a failed apply
    may have written.
    """
    entries = dict(ahead.entries)
    for oid in deleted | p.gone:
        entries.pop(oid, None)
    for i in p.items:
        if i.release:
            entries.pop(i.oid, None)
    for o in outcomes:
        i = o.item
        if i.desired is None:
            continue
        if o.result in APPLIED:
            live_obj = o.live if o.live is not None else i.live
            prior = entries.get(i.oid)
            if live_obj is None and prior is not None and prior.digest == i.digest:
                continue  # left alone without a read (a watch vouched for it): its entry stands
            entries[i.oid] = inventory.Entry(
                i.oid, _version(i), i.digest, inventory.owned_fields(live_obj, field_manager)
            )
        elif o.result == "skipped" and i.oid not in entries:
            # reconcile: disabled — ours, but its digest is unknown: a later sync must not call it unchanged
            entries[i.oid] = inventory.Entry(i.oid, _version(i), "", "")
    return inventory.Inventory(revision, entries, ahead.owner_uid)


def store(
    kube: Kube,
    *,
    namespace: str,
    name: str,
    previous: inventory.Inventory,
    new: inventory.Inventory,
    field_manager: str,
) -> inventory.Inventory:
    """Store the new inventory, unless it is what is stored already (a no-op sync writes
    nothing); conditional on ``previous`` being what is stored.  Returns what is stored now."""
    if new == previous:
        return previous
    expected = dataclasses.replace(new, resource_version=previous.resource_version)  # the write's precondition
    return inventory.save(kube, expected, namespace=namespace, sync_name=name, field_manager=field_manager)
