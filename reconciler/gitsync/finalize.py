"""A GitSync being deleted: prune what it owns, or orphan it, then let the deletion finish.

The controller holds its finalizer on every GitSync it reconciles, so deleting one waits for
this step: with ``prune: true`` everything in its inventory is pruned (as the GitSync's own
identity, held to the same RBAC as apply), otherwise the objects are orphaned (handed over, as
in Flux). Either way its inventory goes too, from where it lives (the target when there is one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.aws.errors import AwsError
from reconciler.gitsync.cluster import KubeCluster
from reconciler.gitsync.errors import InventoryConflictError, StepError
from reconciler.gitsync.handles import Handles
from reconciler.gitsync.pipeline import Given, sync_revision
from reconciler.gitsync.results import SyncOptions
from reconciler.gitsync.spec import FINALIZER, EksTarget, GitSyncSpec, SpecError, gitsync_path
from reconciler.kube.client import MERGE_PATCH, Kube, KubeError, UnreachableError
from reconciler.kube.discovery import RestMapper
from reconciler.report.metrics import Metrics
from reconciler.sync import inventory
from reconciler.sync import prune as pruning
from reconciler.sync.inventory import InventoryOwnerError

log = logging.getLogger("reconciler.gitsync")


class _Stop(Exception):  # noqa: N818 - control flow inside this module, never raised out of it
    """Finalizing ends early: ``message`` is what :meth:`Finalizer.finalize` returns (None: the finalizer may go)."""

    def __init__(self, message: str | None) -> None:
        super().__init__(message)
        self.message = message


def set_finalizer(kube: Kube, obj: dict[str, Any], *, present: bool) -> None:
    """Add or remove our finalizer on the current object: the watched copy first, re-read on a
    conflict, so a stale list of finalizers is never written."""
    md = obj["metadata"]
    path = gitsync_path(md["namespace"], md["name"])
    cur: dict[str, Any] | None = obj  # as the watch delivered it: its resourceVersion guards the first try
    for attempt in range(5):
        cur = kube.get_or_none(path) if attempt else cur
        if cur is None:
            return
        fins = [f for f in cur["metadata"].get("finalizers") or [] if f != FINALIZER]
        if present:
            fins.append(FINALIZER)
        try:
            kube.request(
                "PATCH",
                path,
                body={"metadata": {"finalizers": fins, "resourceVersion": cur["metadata"]["resourceVersion"]}},
                content_type=MERGE_PATCH,
            )
            return
        except KubeError as e:
            if not e.conflict:
                raise


@dataclass(frozen=True, kw_only=True)
class Finalizer:
    """Deletion handling; the handles are those the GitSync's syncs use (:mod:`reconciler.gitsync.handles`)."""

    metrics: Metrics
    appliers: Callable[[str, GitSyncSpec], Handles]
    """(namespace, spec) -> what it prunes with; raises AwsError or SpecError when its target cannot be reached."""
    reader: Callable[[str, GitSyncSpec], Kube]
    """(namespace, spec) -> what its local reads and writes (the inventory) go through."""
    mapper: RestMapper
    """The controller's own RestMapper, for a GitSync whose spec no longer parses."""

    def finalize(self, obj: dict[str, Any], spec: GitSyncSpec | None) -> str | None:
        """On deletion: prune everything the GitSync owns if ``prune: true``, else orphan it.

        A suspended GitSync orphans (as in Flux: suspend, then delete, hands the objects over).
        Returns an error message, or None when the finalizer may go.

        An orphaning GitSync never waits for its target: if the target cannot be reached its
        inventory stays there, and the owner stamp on it keeps a later GitSync of the same name
        from pruning the orphans (it stops with InventoryConflict instead).
        """
        md = obj["metadata"]
        ns, gid = md["namespace"], f"{md['namespace']}/{md['name']}"
        orphan = spec is None or not spec.prune or spec.suspend
        remote = spec.target if spec is not None else None
        # An invalid spec still has a namespace: its local reads and writes go through the
        # identity the tenancy flags give any GitSync there, never the controller's own.
        local = self.reader(ns, spec if spec is not None else GitSyncSpec(git=None))
        try:
            kube, mapper = self.appliers(ns, spec) if spec is not None else (local, self.mapper)
        except (AwsError, SpecError) as e:
            applied = bool((obj.get("status") or {}).get("lastAppliedRevision"))
            if not orphan and applied:
                return f"GitSync {gid}: cannot prune on deletion: cannot connect to the target cluster: {e}"
            # Orphaning, or never applied anything there (e.g. a target the allow-list refused):
            # there is nothing to wait for, and holding the finalizer would only block deletion.
            self._inventory_left(obj, remote, f"cannot connect to the target cluster: {e}")
            return None
        if orphan:
            why = "spec invalid" if spec is None else ("suspended" if spec.prune else "prune: false")
            log.info(f"GitSync deleted; objects orphaned ({why})", extra={"gitsync": gid})
        else:
            try:
                self._prune_all(obj, kube, mapper)
            except _Stop as stop:
                return stop.message
        return self._delete_inventory(obj, kube if remote is not None else local, remote=remote, orphan=orphan)

    def _prune_all(self, obj: dict[str, Any], kube: Kube, mapper: RestMapper) -> None:
        """Prune everything in the inventory; raises :class:`_Stop` when finalizing ends here."""
        md = obj["metadata"]
        ns, name, gid = md["namespace"], md["name"], f"{md['namespace']}/{md['name']}"
        opts = SyncOptions(
            name=name,
            namespace=ns,
            prune=True,
            guard=pruning.Guard(allow_mass_prune=True),
            owner_uid=str(md.get("uid") or ""),
        )
        try:
            res = sync_revision(steps=Given([], ""), cluster=KubeCluster(kube, mapper, opts), options=opts)
        except InventoryConflictError as e:  # it owns nothing there: nothing to wait for
            log.warning(f"GitSync {gid}: deleted, nothing pruned: {e}", extra={"gitsync": gid})
            self.metrics.forget(ns, name)
            raise _Stop(None) from e
        except StepError as e:
            raise _Stop(f"GitSync {gid}: cannot prune on deletion: {e.errors[0]}") from e
        n = len(res.pruned.deleted) if res.pruned else 0
        log.info(f"GitSync deleted; pruned {n} objects", extra={"gitsync": gid})

    def _delete_inventory(
        self, obj: dict[str, Any], kube: Kube, *, remote: EksTarget | None, orphan: bool
    ) -> str | None:
        """The inventory lives next to the objects: on the remote target when there is one."""
        md = obj["metadata"]
        ns, name, gid = md["namespace"], md["name"], f"{md['namespace']}/{md['name']}"
        try:
            inventory.delete(kube, namespace=ns, sync_name=name, owner_uid=str(md.get("uid") or ""))
        except InventoryOwnerError as e:
            log.warning(f"GitSync {gid}: deleted; {e}: left as it is", extra={"gitsync": gid})
        except (KubeError, UnreachableError) as e:
            if orphan and remote is not None:
                self._inventory_left(obj, remote, str(e))
                return None
            return f"GitSync {gid}: cannot delete the inventory: {e}"
        self.metrics.forget(ns, name)
        return None

    def _inventory_left(self, obj: dict[str, Any], target: EksTarget | None, reason: str) -> None:
        """An orphaning GitSync whose remote inventory cannot be deleted: one ERROR line, and the
        finalizer goes anyway (a target gone for good must not hold a deletion forever)."""
        md = obj["metadata"]
        gid = f"{md['namespace']}/{md['name']}"
        log.error(
            f"GitSync {gid}: deleted, objects orphaned, but its inventory ConfigMap "
            f"{md['namespace']}/{inventory.configmap_name(md['name'])} stays in {target}: {reason}",
            extra={"gitsync": gid, "reason": "TargetFailed"},
        )
        self.metrics.forget(md["namespace"], md["name"])
