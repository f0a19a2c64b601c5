"""A push webhook's delivery becomes a ``requested-at`` annotation on every GitSync that follows it.

Through the annotation rather than an in-memory queue, so that a standby replica (the Service
reaches both) hands the push to the leader, and a push during a restart is not lost. The value
starts with :data:`~reconciler.gitsync.spec.WEBHOOK_STAMP`, which lets a GitSync whose path the
push did not change skip the render (the fast path of the reconcile).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reconciler.gitsync.spec import REQUESTED_AT, WEBHOOK_STAMP, gitsync_path
from reconciler.kube.client import MERGE_PATCH, Kube
from reconciler.report import conditions as cond
from reconciler.source import webhook

CONCURRENCY = 8
"""GitSyncs annotated at once for one push."""


class PushRequests:
    """The webhook receiver's ``on_push``: marks the GitSyncs (of ``namespace``; None: all) that
    follow the pushed repository and branch as requested, and returns how many."""

    def __init__(self, kube: Kube, namespace: str | None) -> None:
        self.kube, self.namespace = kube, namespace
        self._seq = itertools.count()  # two pushes within one clock tick still differ

    def __call__(self, push: webhook.Push) -> int:
        items = self.kube.get(gitsync_path(self.namespace)).get("items", [])
        stamp = f"{WEBHOOK_STAMP}{cond.now()}#{next(self._seq)}"
        hit = [obj["metadata"] for obj in items if _follows(obj, push)]

        def mark(md: dict[str, Any]) -> None:
            self.kube.request(
                "PATCH",
                gitsync_path(md["namespace"], md["name"]),
                body={"metadata": {"annotations": {REQUESTED_AT: stamp}}},
                content_type=MERGE_PATCH,
            )

        # Marked before the answer (a push is never lost to a restart), several at once: a fleet of
        # a thousand GitSyncs on one repository must not keep the sender waiting for a thousand
        # round trips one after another.
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            list(pool.map(mark, hit))
        return len(hit)


def _follows(obj: dict[str, Any], push: webhook.Push) -> bool:
    """Whether the GitSync follows the pushed repository and branch."""
    git = ((obj.get("spec") or {}).get("source") or {}).get("git") or {}
    if webhook.repo_key(str(git.get("url", ""))) not in push.repos:
        return False
    branch = (git.get("ref") or {}).get("branch")
    return push.branch is None or branch in (None, push.branch)
