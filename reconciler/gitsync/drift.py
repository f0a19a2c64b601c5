"""Live drift detection: watches, not polling.

One watch per kind that any GitSync manages, filtered by the presence of our owner
label, feeds every change of a managed object to a cheap check against what the last
sync applied: is every value git sets still there, and do we still own the same fields?
A change that fails the check is drift, reported within the watch latency (well under a
second) instead of at the next interval; the steady state costs one open watch per kind,
not one request per object per interval.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.kube import watch
from reconciler.kube.client import Kube
from reconciler.kube.discovery import Resource
from reconciler.sync import diffing
from reconciler.sync.health import Health, State, assess
from reconciler.sync.inventory import owned_fields
from reconciler.sync.objects import DISABLED, OWNER_LABEL, RECONCILE_ANNOTATION, ObjectId, annotation
from reconciler.sync.plan import comparable, contains

log = logging.getLogger("reconciler.gitsync.drift")
Key = tuple[str, str]


@dataclass(frozen=True)
class Desired:
    """What a managed object must look like: the shape git gives it and the values the API
    server stored for that shape right after our apply (so server-side normalisation —
    ``cpu: 1`` stored as ``"1"``, ``stringData`` stored as ``data`` — is never drift)."""

    obj: dict[str, Any]
    fields: str  # owned-fields digest right after our apply
    resource: Resource
    baseline: Any = None  # _project(shape(obj), live after apply); None: compare with obj itself
    digest: str = ""  # default "": the inventory digest of obj ("" = unknown: never vouched for)
    healthy: bool = False  # default False: the sync found it Current (spec.wait); events may say otherwise since

    @classmethod
    def after_apply(
        cls,
        obj: dict[str, Any],
        live: dict[str, Any] | None,
        *,
        fields: str,
        resource: Resource,
        digest: str = "",
        healthy: bool = False,
    ) -> Desired:
        baseline = _project(shape(obj), comparable(live) or {}) if live is not None else None
        return cls(obj, fields, resource, baseline, digest, healthy)


def _kept(old: Desired | None, new: Desired) -> Desired:
    """An object a sync left alone without reading it (vouched for by the watch) keeps the
    baseline of the apply that made it: that one knows how the server stored it."""
    if new.baseline is None and old is not None and old.digest and old.digest == new.digest:
        return dataclasses.replace(old, healthy=new.healthy)
    return new


@dataclass(frozen=True)
class Vouched:
    """What the watch knows of one object its last sync applied, nothing having drifted since."""

    digest: str  # the inventory digest of what was applied
    health: Health | None  # its health now, as the last event (or the sync) showed it; None: unknown


def shape(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields git sets, as the server stores them (a Secret's stringData lands in data)."""
    out = dict(comparable(obj) or {})
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and "stringData" in out:
        out["data"] = {**(out.get("data") or {}), **dict.fromkeys(out.pop("stringData") or {}, "")}
    return out


@dataclass
class Drift:
    oid: ObjectId
    paths: list[str]  # which fields differ ("(deleted)" when the object is gone)


def check(desired: Desired, live: dict[str, Any] | None, field_manager: str) -> Drift | None:
    oid = ObjectId.of(desired.obj)
    if live is None:
        return Drift(oid, ["(deleted)"])
    same_fields = owned_fields(live, field_manager) == desired.fields
    if desired.baseline is None:
        if contains(desired.obj, live) and same_fields:
            return None
        projected = _project(desired.obj, comparable(live) or {})
        paths = diffing.changed_paths(projected, comparable(desired.obj) or {}) or ["(field ownership changed)"]
        return Drift(oid, paths)
    projected = _project(shape(desired.obj), comparable(live) or {})
    if projected == desired.baseline and same_fields:
        return None
    paths = diffing.changed_paths(desired.baseline, projected) or ["(field ownership changed)"]
    return Drift(oid, paths)


def _project(shape: Any, value: Any) -> Any:
    """``value`` cut down to the keys ``shape`` has, so the diff shows only fields git sets."""
    if isinstance(shape, dict) and isinstance(value, dict):
        return {k: _project(shape[k], value[k]) for k in shape if k in value}
    if isinstance(shape, list) and isinstance(value, list) and len(shape) == len(value):
        return [_project(s, v) for s, v in zip(shape, value, strict=True)]
    return value


@dataclass
class _Tracked:
    objects: dict[ObjectId, Desired] = field(default_factory=dict)
    drifted: dict[ObjectId, Drift] = field(default_factory=dict)
    # While a sync of this GitSync runs, its own applies would look like drift against the
    # previous revision's baseline: events are held until the sync hands over the new one,
    # then checked against it (so an edit made during a sync is not lost).
    paused: bool = False
    held: dict[ObjectId, dict[str, Any] | None] = field(default_factory=dict)
    # Each watched kind's list count when this baseline was set: a relist since (a 410 Gone, after
    # which a deletion may have gone unseen) means the watch can no longer vouch for the objects.
    epochs: dict[Resource, int] = field(default_factory=dict)
    health: dict[ObjectId, Health] = field(default_factory=dict)  # from events since the baseline
    complete: bool = False  # every object of its last sync is tracked (see track)
    opted_out: set[ObjectId] = field(default_factory=set)  # annotated reconcile: disabled since: never vouched


class DriftWatcher:
    """Keeps one watch per managed kind and calls ``on_change(key, drifted)`` whenever the
    set of drifted objects of a GitSync changes (including back to empty)."""

    def __init__(
        self,
        kube: Kube,
        *,
        field_manager: str,
        on_change: Callable[[Key, dict[ObjectId, Drift]], None],
        stop: threading.Event,
    ) -> None:
        self._kube, self._fm, self._on_change, self._stop = kube, field_manager, on_change, stop
        self._lock = threading.Lock()
        self._tracked: dict[Key, _Tracked] = {}
        self._watched: set[Resource] = set()
        self._epochs: dict[Resource, int] = {}  # lists done per watched kind (0 or absent: not listed yet)
        self._changed = threading.Condition(self._lock)  # a held event arrived (health waits on it)

    def track(self, key: Key, objects: dict[ObjectId, Desired], *, complete: bool = False) -> None:
        """After a successful sync: this is what the GitSync's objects must look like now.
        ``complete``: these are all of its objects, so the watch may vouch for the whole sync."""
        with self._lock:
            t = self._tracked.setdefault(key, _Tracked())
            t.complete = complete
            t.objects = {oid: _kept(t.objects.get(oid), d) for oid, d in objects.items()}
            t.drifted, t.opted_out = {}, set()
            t.paused = False
            t.epochs = {d.resource: self._epochs.get(d.resource, 0) for d in objects.values()}
            t.health = {}
            held, t.held = t.held, {}
            for oid, live in held.items():
                desired = objects.get(oid)
                d = check(desired, live, self._fm) if desired is not None else None
                if desired is not None:
                    t.health[oid] = assess(live)  # what it became during the sync
                if d is not None:
                    t.drifted[oid] = d
            snapshot = dict(t.drifted)
            new = {d.resource for d in objects.values()} - self._watched
            self._watched |= new
        if snapshot:
            self._on_change(key, snapshot)
        for res in sorted(new, key=lambda r: (r.group, r.kind)):
            threading.Thread(target=self._watch, args=(res,), name=f"drift-{res.kind}", daemon=True).start()

    def pause(self, key: Key) -> bool:
        """A sync of ``key`` starts: hold its objects' events until it hands over. True when the
        watches vouch that its objects are still as its last sync left them: every one tracked,
        none drifted, and every kind watched without a gap (no relist) since."""
        with self._lock:
            t = self._tracked.setdefault(key, _Tracked())  # a new GitSync's events are held too (health)
            t.paused = True
            return t.complete and bool(t.objects) and not t.drifted and not t.held and self._unbroken(t)

    def vouched(self, key: Key) -> dict[ObjectId, Vouched]:
        """The objects of ``key`` the watch vouches are still as its last sync applied them (none
        drifted, no relist of their kind since): a plan need not read them again."""
        with self._lock:
            t = self._tracked.get(key)
            if t is None or t.drifted or not self._unbroken(t):
                return {}
            out = {}
            for oid, d in t.objects.items():
                if not d.digest or oid in t.held or oid in t.opted_out:  # changed during this sync: read it
                    continue
                h = t.health.get(oid) or (Health(State.CURRENT, "Current when last synced") if d.healthy else None)
                out[oid] = Vouched(d.digest, h)
            return out

    def _unbroken(self, t: _Tracked) -> bool:
        resources = {d.resource for d in t.objects.values()}
        return all(0 < t.epochs.get(r, 0) == self._epochs.get(r, 0) for r in resources)

    def watching(self, res: Resource) -> bool:
        """Whether the watch of ``res`` has listed and streams its changes now."""
        with self._lock:
            return self._epochs.get(res, 0) > 0

    def wait_held(
        self, key: Key, *, done: Callable[[dict[ObjectId, dict[str, Any] | None]], bool], timeout: float
    ) -> bool:
        """Wait (at most ``timeout`` seconds) until ``done`` accepts the events held for ``key``
        during its sync: the latest state of each object that changed since the sync began."""
        with self._changed:
            t = self._tracked.get(key)
            return t is not None and self._changed.wait_for(lambda: done(dict(t.held)), timeout=timeout)

    def resume(self, key: Key) -> None:
        """After a failed sync: watch against the old baseline again (held events included)."""
        with self._lock:
            t = self._tracked.get(key)
            if t is None:
                return
            t.paused = False
            held, t.held = t.held, {}
        for oid, live in held.items():
            self._observe(key, oid, live)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._tracked.pop(key, None)

    def drifted(self, key: Key) -> dict[ObjectId, Drift]:
        with self._lock:
            t = self._tracked.get(key)
            return dict(t.drifted) if t else {}

    def _watch(self, res: Resource) -> None:
        watch.watch(
            self._kube,
            res.collection_path(),
            handler=functools.partial(self._event, res),
            stop=self._stop,
            query=[("labelSelector", OWNER_LABEL)],
            kind=res.kind,
            api_version=res.api_version,
        )

    def _event(self, res: Resource, type_: str, obj: dict[str, Any]) -> None:
        """One event of ``res``'s watch: a managed object changed, or a (re)list ended."""
        if not obj:  # the end of a (re)list: a new epoch of this kind's watch
            with self._lock:
                self._epochs[res] = self._epochs.get(res, 0) + 1
            return
        labels = (obj.get("metadata") or {}).get("labels") or {}
        owner = labels.get(OWNER_LABEL, "")
        ns, _, name = owner.partition(".")
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        self._observe((ns, name), ObjectId.of(obj), None if type_ == "DELETED" else obj)

    def _observe(self, key: Key, oid: ObjectId, live: dict[str, Any] | None) -> None:
        with self._lock:
            t = self._tracked.get(key)
            if t is not None and t.paused:
                t.held[oid] = live  # the latest state wins
                self._changed.notify_all()
                return
            desired = t.objects.get(oid) if t else None
            if t is None or desired is None:
                return
            t.health[oid] = assess(live)
            if live is not None and annotation(live, RECONCILE_ANNOTATION) == DISABLED:
                t.opted_out.add(oid)
            d = check(desired, live, self._fm)
            before = set(t.drifted)
            if d is None:
                t.drifted.pop(oid, None)
            else:
                t.drifted[oid] = d
            if set(t.drifted) == before and d is None:
                return
            snapshot = dict(t.drifted)
        self._on_change(key, snapshot)
