"""Wait until applied objects are healthy (``--wait``), polling with lists, not GETs."""

from __future__ import annotations

import time
from collections.abc import Sequence

from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.sync import health, live
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item

FIRST_POLL = 0.1
"""Seconds before the second poll; each later wait doubles, up to the caller's ``interval``."""


def wait_healthy(
    kube: Kube, mapper: RestMapper, items: Sequence[Item], owner: str, timeout: float, interval: float = 1.0
) -> dict[ObjectId, health.Health]:
    """Poll until every object is Current, one has Failed, or ``timeout`` passes.

    Returns the last assessment of every object; the caller reports the ones not Current.
    A Failed object ends the wait early: waiting longer would not fix a crash loop. Polls
    start at FIRST_POLL and double up to ``interval``: a workload controller answers a change in
    well under a second, and a worker held for a whole second per GitSync made the health wait
    the longest part of a fleet's sync. Objects found Current are not listed again.
    """
    wanted = []
    lost: dict[ObjectId, health.Health] = {}
    for i in items:
        if i.desired is None:
            continue
        try:
            wanted.append((i.oid, mapper.find(i.desired["apiVersion"], i.desired["kind"])))
        except UnknownKindError as e:
            lost[i.oid] = health.Health(health.State.NOT_FOUND, str(e))
    deadline = time.monotonic() + timeout
    result: dict[ObjectId, health.Health] = dict(lost)
    pending, delay = wanted, min(FIRST_POLL, interval)
    while True:
        objs = live.fetch_owned(kube, owner, pending).objects
        result |= {oid: health.assess(objs.get(oid)) for oid, _ in pending}
        pending = [(oid, r) for oid, r in pending if result[oid].state is not health.State.CURRENT]
        failed = any(h.state is health.State.FAILED for h in result.values())
        if not pending or failed or time.monotonic() >= deadline:
            return result
        time.sleep(delay)
        delay = min(delay * 2, interval)
