"""A push webhook's delivery becomes a ``requested-at`` annotation on every GitSync that follows it.

Through the annotation rather than an in-memory queue, so that a standby replica (the Service
reaches both) hands the push to the leader, and a push during a restart is not lost. The value
starts with :data:`~reconciler.gitsync.spec.WEBHOOK_STAMP`, which lets a GitSync whose path the
push did not change skip the render (the fast path of the reconcile).
"""

from __future__ import annotations

import itertools

from reconciler.gitsync.spec import REQUESTED_AT, WEBHOOK_STAMP, gitsync_path
from reconciler.kube.client import MERGE_PATCH, Kube
from reconciler.report import conditions as cond
from reconciler.source import webhook


class PushRequests:
    """The webhook receiver's ``on_push``: marks the GitSyncs (of ``namespace``; None: all) that
    follow the pushed repository and branch as requested, and returns how many."""

    def __init__(self, kube: Kube, namespace: str | None) -> None:
        self.kube, self.namespace = kube, namespace
        self._seq = itertools.count()  # two pushes within one clock tick still differ

    def __call__(self, push: webhook.Push) -> int:
        items = self.kube.get(gitsync_path(self.namespace)).get("items", [])
        stamp = f"{WEBHOOK_STAMP}{cond.now()}#{next(self._seq)}"
        n = 0
        for obj in items:
            git = ((obj.get("spec") or {}).get("source") or {}).get("git") or {}
            if webhook.repo_key(str(git.get("url", ""))) not in push.repos:
                continue
            branch = (git.get("ref") or {}).get("branch")
            if push.branch is not None and branch not in (None, push.branch):
                continue
            md = obj["metadata"]
            self.kube.request(
                "PATCH",
                gitsync_path(md["namespace"], md["name"]),
                body={"metadata": {"annotations": {REQUESTED_AT: stamp}}},
                content_type=MERGE_PATCH,
            )
            n += 1
        return n
