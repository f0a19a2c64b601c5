"""A push webhook's delivery becomes a ``requested-at`` annotation on every GitSync that follows it.

Through the annotation rather than an in-memory queue, so that a standby replica (the Service
reaches both) hands the push to the leader, and a push during a restart is not lost. The value
starts with :data:`~reconciler.gitsync.spec.WEBHOOK_STAMP`, which lets a GitSync whose path the
push did not change skip the render (the fast path of the reconcile).
"""

from __future__ import annotations

import concurrent.futures
import itertools
from typing import Any

from reconciler.gitsync.spec import REQUESTED_AT, WEBHOOK_STAMP, gitsync_path
from reconciler.kube.client import MERGE_PATCH, Kube
from reconciler.report import conditions as cond
from reconciler.source import webhook

PATCHES_AT_ONCE = 8
"""Requested-at PATCHes in flight for one push (the Kube handle's pool has 8 connections by default)."""


class PushRequests:
    """The webhook receiver's ``on_push``: marks the GitSyncs (of ``namespace``; None: all) that
    follow the pushed repository and branch as requested, and returns how many."""

    def __init__(self, kube: Kube, namespace: str | None) -> None:
        self.kube, self.namespace = kube, namespace
        self._seq = itertools.count()  # two pushes within one clock tick still differ

    def __call__(self, push: webhook.Push) -> int:
        items = self.kube.get(gitsync_path(self.namespace)).get("items", [])
        stamp = f"{WEBHOOK_STAMP}{cond.now()}#{next(self._seq)}"
        follows = [obj["metadata"] for obj in items if _follows(obj, push)]
        # Concurrently: one push can wake a whole fleet, and the sender (and bench/mttp.py's probe)
        # waits for the answer; one PATCH after another took over 30 s for 200 GitSyncs on a busy
        # controller. The first error still fails the delivery (the sender retries it).
        with concurrent.futures.ThreadPoolExecutor(PATCHES_AT_ONCE, thread_name_prefix="push") as pool:
            list(pool.map(lambda md: self._request(md, stamp), follows))
        return len(follows)

    def _request(self, md: dict[str, str], stamp: str) -> None:
        self.kube.request(
            "PATCH",
            gitsync_path(md["namespace"], md["name"]),
            body={"metadata": {"annotations": {REQUESTED_AT: stamp}}},
            content_type=MERGE_PATCH,
        )


def _follows(obj: dict[str, Any], push: webhook.Push) -> bool:
    """Whether GitSync ``obj`` follows the pushed repository and branch."""
    git = ((obj.get("spec") or {}).get("source") or {}).get("git") or {}
    if webhook.repo_key(str(git.get("url", ""))) not in push.repos:
        return False
    branch = (git.get("ref") or {}).get("branch")
    return push.branch is None or branch in (None, push.branch)
