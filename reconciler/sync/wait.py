"""Wait until applied objects are healthy (``--wait``), polling with lists, not GETs."""

from __future__ import annotations

import time
from collections.abc import Sequence

from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.sync import health, live
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item


def wait_healthy(
    kube: Kube, mapper: RestMapper, items: Sequence[Item], owner: str, timeout: float, interval: float = 1.0
) -> dict[ObjectId, health.Health]:
    """Poll until every object is Current, one has Failed, or ``timeout`` passes.

    Returns the last assessment of every object; the caller reports the ones not Current.
    A Failed object ends the wait early: waiting longer would not fix a crash loop.
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
    while True:
        objs = live.fetch_owned(kube, owner, wanted).objects
        result = {oid: health.assess(objs.get(oid)) for oid, _ in wanted} | lost
        states = {h.state for h in result.values()}
        if states <= {health.State.CURRENT} or health.State.FAILED in states or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
