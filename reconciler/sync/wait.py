"""Waiting on the API server: for CRDs to be Established and their kinds served, for a
deleted object to be gone, and for applied objects to be healthy (``--wait``).

Every wait polls with a deadline rather than watching: each is short, happens once per
sync, and must give up with a clear message rather than hang a worker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from reconciler.kube import paths
from reconciler.kube.client import Kube
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.sync import health, live
from reconciler.sync.objects import ObjectId
from reconciler.sync.plan import Item

FIRST_POLL = 0.1
"""Seconds before the second poll; each later wait doubles, up to the caller's ``interval``."""


def _established(crd: dict[str, Any]) -> bool:
    conds = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)


def wait_crds_established(kube: Kube, names: list[str], timeout: float) -> list[str]:
    """Wait until the API server serves the CRDs; returns the names that never became Established."""
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            crd = kube.get_or_none(
                paths.api_path(
                    group="apiextensions.k8s.io", version="v1", resource="customresourcedefinitions", name=name
                )
            )
            if crd is not None and _established(crd):
                pending.discard(name)
        if pending:
            time.sleep(0.2)
    return sorted(pending)


def wait_gone(kube: Kube, path: str, timeout: float) -> bool:
    """Wait until the object at ``path`` no longer exists; False if it still does after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kube.get_or_none(path) is None:
            return True
        time.sleep(0.2)
    return False


def wait_kinds_served(mapper: RestMapper, items: list[Item], timeout: float) -> list[str]:
    """Wait until discovery serves the kinds of deferred custom resources.

    An Established CRD is not always in discovery at once (a CRD that gained a version was
    Established before), so poll rather than refresh once and fail.
    """
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for i in items:
            assert i.desired is not None
            try:
                mapper.find(i.desired["apiVersion"], i.desired["kind"])
            except UnknownKindError:
                missing.append(f"{i.desired['kind']} in {i.desired['apiVersion']}")
        if not missing or time.monotonic() >= deadline:
            return sorted(set(missing))
        time.sleep(0.5)
        mapper.refresh()


def wait_healthy(
    kube: Kube,
    items: Sequence[Item],
    *,
    mapper: RestMapper,
    owner: str,
    timeout: float,
    interval: float = 1.0,
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
