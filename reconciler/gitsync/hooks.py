"""Helm hooks in a sync: apply each one in Helm's order, wait for it, honour its delete policy.

As in Argo CD, a hook is not part of the revision's inventory: it is never pruned and never
drift-watched, it runs when the sync changes something (Helm's install or upgrade) and is left
as it ended unless its ``helm.sh/hook-delete-policy`` says otherwise:

- ``before-hook-creation`` (Helm's default): the previous run's object is deleted, and its
  deletion awaited, before the new one is applied (a Job's template cannot be updated);
- ``hook-succeeded``: deleted once it succeeded;
- ``hook-failed``: deleted when it failed.

A Job must complete and a Pod must succeed; any other kind is done once applied. The first hook
that fails stops the phase: nothing after it is applied, and its message names the hook.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.kube import ssa
from reconciler.kube.client import Kube, KubeError
from reconciler.kube.discovery import RestMapper, UnknownKindError
from reconciler.render.helm import Hook
from reconciler.sync import health

BEFORE_CREATION = "before-hook-creation"
ON_SUCCESS = "hook-succeeded"
ON_FAILURE = "hook-failed"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class HookRun:
    """Where and how the hooks of one phase run."""

    kube: Kube
    mapper: RestMapper
    namespace: str  # the release namespace: for namespaced hooks without metadata.namespace
    field_manager: str
    timeout: float  # seconds each hook may take to complete (the GitSync's timeout)


def run_hooks(run: HookRun, hooks: Sequence[Hook], *, event: str) -> list[str]:
    """Run ``hooks`` in order; the first failure (as one message naming the hook) stops the rest."""
    for hook in hooks:
        try:
            why = _run_one(run, hook)
        except (KubeError, UnknownKindError) as e:  # refused by the API server: the hook failed, named
            why = str(e)
        if why:
            return [f"hook {_name(run, hook.obj)} ({event}): {why}"]
    return []


def _name(run: HookRun, obj: dict[str, Any]) -> str:
    """``Kind/namespace/name`` where it lands (``Kind/name`` when its kind is unknown)."""
    try:
        return ssa.describe(_placed(run, obj))
    except UnknownKindError:
        return ssa.describe(obj)


def _placed(run: HookRun, obj: dict[str, Any]) -> dict[str, Any]:
    """The object with the namespace it lands in (for messages and reads)."""
    _, ns = ssa.locate(run.mapper, obj, run.namespace)
    if ns is None:
        return obj
    return {**obj, "metadata": {**obj["metadata"], "namespace": ns}}


def _run_one(run: HookRun, hook: Hook) -> str:
    obj = _placed(run, copy.deepcopy(hook.obj))
    if BEFORE_CREATION in hook.delete_policies:
        _delete(run, obj)
    ssa.apply(run.kube, obj, mapper=run.mapper, field_manager=run.field_manager, default_namespace=run.namespace)
    state = _await(run, obj)
    failed = state.state is not health.State.CURRENT
    if (ON_FAILURE if failed else ON_SUCCESS) in hook.delete_policies:
        _delete(run, obj)
    return state.message if failed else ""


def _read(run: HookRun, obj: dict[str, Any]) -> dict[str, Any] | None:
    res, ns = ssa.locate(run.mapper, obj, run.namespace)
    return run.kube.get_or_none(res.object_path(obj["metadata"]["name"], ns))


def _delete(run: HookRun, obj: dict[str, Any]) -> None:
    """Delete the object (its Pods with it) and wait until it is gone."""
    if not ssa.delete(run.kube, obj, mapper=run.mapper, default_namespace=run.namespace, propagation="Foreground"):
        return
    deadline = time.monotonic() + run.timeout
    while _read(run, obj) is not None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def _await(run: HookRun, obj: dict[str, Any]) -> health.Health:
    """A Job until it completes or fails, a Pod until it succeeds or fails; anything else at once."""
    kind = obj.get("kind")
    if kind not in ("Job", "Pod"):
        return health.Health(health.State.CURRENT, "applied")
    deadline = time.monotonic() + run.timeout
    while True:
        state = _state(_read(run, obj))
        if state.state is not health.State.IN_PROGRESS:
            return state  # Current: done; anything else (Failed, deleted) is a failure
        if time.monotonic() >= deadline:
            return health.Health(health.State.FAILED, f"not complete after {run.timeout:g}s: {state.message}")
        time.sleep(POLL_SECONDS)


def _state(live: dict[str, Any] | None) -> health.Health:
    if live is None:
        return health.Health(health.State.NOT_FOUND, "deleted while it ran")
    if live.get("kind") == "Pod":
        phase = (live.get("status") or {}).get("phase")
        if phase == "Succeeded":
            return health.Health(health.State.CURRENT, "Pod succeeded")
        if phase == "Failed":
            return health.Health(health.State.FAILED, "Pod failed")
        return health.Health(health.State.IN_PROGRESS, f"Pod {phase or 'pending'}")
    return health.assess(live)
