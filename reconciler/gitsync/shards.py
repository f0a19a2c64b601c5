"""Shards: GitSyncs split across controller replicas, each shard owned through its own Lease.

``reconciler run --shards N`` puts every GitSync in one of N shards by a stable hash of its
namespace/name (:func:`shard_of`; Python's ``hash`` is salted per process, so it is not used).
Shard ``k`` is owned through the ``coordination.k8s.io`` Lease ``gitops-reconciler-shard-<k>`` in
the controller's namespace, so Kubernetes is the only coordinator: no replica talks to another.

Replicas find each other through membership Leases (``gitops-reconciler-member-<hash>``, one per
replica, renewed like the shards). Each round (:meth:`ShardLeases.tick`, every ``retry_period``)
a replica renews its membership and its shards, counts the live members, and moves towards its
fair share: N // members shards, one more for the first N % members members in identity order,
so the shares add up to N and every replica computes the same split. Above its share it hands
shards back (the others take them on their next round); below it, it takes free shards: never
held, handed back, or expired. A Lease is expired when *we* have not seen it change for its
``leaseDurationSeconds``, on our monotonic clock, as client-go judges it: another node's wall
clock may be skewed. Every write is a PUT with the resourceVersion read, so two replicas racing
for one Lease cannot both win.

Fencing: :meth:`ShardLeases.holds` is true only until ``renew_deadline`` after the send time of
our last successful renewal, and ``renew_deadline`` < ``lease_duration``. A replica cut off
from the API server therefore stops claiming its shards before any other replica can see the
Lease expire. The loop asks ``holds(shard)`` before each write phase (apply, prune, status), and
every request of the phase is fenced by :meth:`ShardLeases.fence` (the claim's lapse time): refused
once it passed, its timeout cut to the time left. So a write that was in flight when a partition
began (held, then delivered late) cannot reach the API server after our claim lapsed; what is sent
before lands within ``lease_duration - renew_deadline`` of margin, before anyone can take over.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from reconciler.kube import paths
from reconciler.kube.client import Kube, KubeError, UnreachableError

log = logging.getLogger(__name__)

SHARD_PREFIX = "gitops-reconciler-shard-"
MEMBER_PREFIX = "gitops-reconciler-member-"
KIND_LABEL = "gitops.reconciler.dev/lease"  # "shard" or "member": one LIST reads both


def shard_of(*, namespace: str, name: str, shards: int) -> int:
    """The shard of GitSync ``namespace/name``: the same in every process and release."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_lease_name(shard: int) -> str:
    return f"{SHARD_PREFIX}{shard}"


def member_lease_name(identity: str) -> str:
    """A DNS-safe Lease name for any identity (a Pod name, or host-pid outside a cluster)."""
    return MEMBER_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:16]


def fair_share(*, shards: int, members: Iterable[str], me: str) -> int:
    """How many shards ``me`` should hold among ``members`` (``me`` counted even if absent)."""
    ordered = sorted({*members, me})
    base, extra = divmod(shards, len(ordered))
    return base + (1 if ordered.index(me) < extra else 0)


@dataclass(frozen=True)
class ShardOptions:
    """How a replica takes part in sharding."""

    shards: int
    """Number of shards (``--shards``); no default: 1 means one replica reconciles everything."""
    namespace: str
    """The controller's namespace, where the Leases live (no default; $POD_NAMESPACE in a Pod)."""
    identity: str
    """This replica's holder identity, unique per replica (no default; $POD_NAME in a Pod)."""
    lease_duration: float = 15.0
    """Seconds without a renewal before another replica takes a shard over (default 15)."""
    renew_deadline: float = 10.0
    """Seconds after a renewal was sent that holds() stays true; < lease_duration (default 10)."""
    retry_period: float = 2.0
    """Seconds between rounds of renew, count, rebalance (default 2)."""

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError("shards must be at least 1")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration")


class ShardMetrics:
    """reconciler_shards_held, reconciler_shard_gitsyncs{shard}, reconciler_shard_rebalances_total."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry or CollectorRegistry()
        self.held = Gauge("reconciler_shards_held", "Shards this replica holds the Lease of.", registry=r)
        self.gitsyncs = Gauge(
            "reconciler_shard_gitsyncs", "GitSyncs in each shard this replica holds.", ("shard",), registry=r
        )
        self.rebalances = Counter("reconciler_shard_rebalances", "Shards this replica took or handed back.", registry=r)


@dataclass
class _Seen:
    """What we last saw of one Lease, and when (our monotonic clock) we saw it change."""

    version: tuple[Any, ...]
    since: float


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wall() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ShardLeases:
    """One replica's view of the shard Leases; :meth:`run` in a thread, or drive :meth:`tick`."""

    def __init__(
        self,
        kube: Kube,
        *,
        options: ShardOptions,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _wall,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._kube, self.options, self._clock, self._wall = kube, options, clock, wall
        self._collection = paths.api_path(
            group="coordination.k8s.io", version="v1", resource="leases", namespace=options.namespace
        )
        self._seen: dict[str, _Seen] = {}
        self._renewed: dict[int, float] = {}  # shard -> monotonic send time of our last successful write
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self.metrics = ShardMetrics(registry)

    # ------------------------------------------------------------------ what the loop asks

    def deadline(self, shard: int) -> float:
        """When (on our clock) our claim on ``shard`` lapses unless renewed before: ``renew_deadline``
        after the send time of our last successful renewal; 0.0 without a claim."""
        with self._mutex:
            sent = self._renewed.get(shard)
        return 0.0 if sent is None else sent + self.options.renew_deadline

    def holds(self, shard: int) -> bool:
        """True while our last renewal of ``shard`` is younger than ``renew_deadline``."""
        return self._clock() < self.deadline(shard)

    def fence(self, *, namespace: str, name: str) -> float:
        """The deadline of GitSync ``namespace/name``'s writes: its shard's :meth:`deadline`. Every
        write for it must be over by then (see :meth:`reconciler.kube.client.Kube.fenced`)."""
        return self.deadline(shard_of(namespace=namespace, name=name, shards=self.options.shards))

    def owns(self, *, namespace: str, name: str) -> bool:
        """Whether this replica may reconcile (and write for) GitSync ``namespace/name`` now."""
        return self._clock() < self.fence(namespace=namespace, name=name)

    def held(self) -> frozenset[int]:
        """The shards we currently hold (renewed within ``renew_deadline``)."""
        with self._mutex:
            shards = list(self._renewed)
        return frozenset(s for s in shards if self.holds(s))

    def count(self, gitsyncs: Iterable[tuple[str, str]]) -> None:
        """Publish GitSyncs per held shard from the (namespace, name) pairs the loop knows."""
        per: dict[int, int] = dict.fromkeys(self.held(), 0)
        for namespace, name in gitsyncs:
            k = shard_of(namespace=namespace, name=name, shards=self.options.shards)
            if k in per:
                per[k] += 1
        self.metrics.gitsyncs.clear()
        for k, n in per.items():
            self.metrics.gitsyncs.labels(shard=str(k)).set(n)

    # ------------------------------------------------------------------ the rounds

    def run(self) -> None:
        """Rounds every ``retry_period`` until :meth:`stop`; a failed round is logged and retried."""
        while not self._stop.is_set():
            try:
                self.tick()
            except (KubeError, UnreachableError) as e:
                log.warning("shard leases: %s", e)
            self._stop.wait(self.options.retry_period)

    def tick(self) -> None:
        """One round: renew membership, read every Lease, renew ours, move to the fair share."""
        self._write_member()
        leases = self._list()
        members = [
            str(spec["holderIdentity"])
            for name, spec in leases.items()
            if name.startswith(MEMBER_PREFIX) and spec.get("holderIdentity") and not self._expired(name, spec)
        ]
        target = fair_share(shards=self.options.shards, members=members, me=self.options.identity)
        mine = [k for k in range(self.options.shards) if self._holder(leases, k) == self.options.identity]
        for k in set(self._renewed) - set(mine):  # taken over after our claim lapsed
            self._drop(k)
        for k in mine[target:]:  # above our share: hand back the highest (each Lease is written once a round)
            self._write_shard(k, leases.get(shard_lease_name(k)), take=False)
        kept = [k for k in mine[:target] if self._write_shard(k, leases.get(shard_lease_name(k)), take=True)]
        have = min(len(kept), target)
        for k in range(self.options.shards):
            if have >= target:
                break
            if k in mine or not self._free(leases, k):
                continue
            have += self._write_shard(k, leases.get(shard_lease_name(k)), take=True)
        self.metrics.held.set(len(self.held()))

    def stop(self) -> None:
        """Stop the rounds and hand every shard back at once, so the others need not wait for expiry."""
        self._stop.set()
        with self._mutex:
            shards, self._renewed = list(self._renewed), {}
        for k in shards:
            try:
                cur = self._kube.get_or_none(f"{self._collection}/{shard_lease_name(k)}")
                if cur is not None and (cur.get("spec") or {}).get("holderIdentity") == self.options.identity:
                    self._put(shard_lease_name(k), cur, holder=None)
            except (KubeError, UnreachableError) as e:
                log.warning("could not hand back shard %d: %s", k, e)
        try:
            self._kube.request("DELETE", f"{self._collection}/{member_lease_name(self.options.identity)}")
        except (KubeError, UnreachableError) as e:
            log.warning("could not remove the membership lease: %s", e)
        self.metrics.held.set(0)

    # ------------------------------------------------------------------ internals

    def _list(self) -> dict[str, dict[str, Any]]:
        """Every shard and member Lease by name (its spec, plus the object under "_obj")."""
        items = self._kube.get(self._collection, query=[("labelSelector", KIND_LABEL)])["items"]
        out = {}
        for obj in items:
            spec = dict(obj.get("spec") or {})
            spec["_obj"] = obj
            name = obj["metadata"]["name"]
            self._observe(name, (spec.get("holderIdentity"), spec.get("renewTime"), obj["metadata"]["resourceVersion"]))
            out[name] = spec
        return out

    def _observe(self, name: str, version: tuple[Any, ...]) -> None:
        seen = self._seen.get(name)
        if seen is None or seen.version != version:
            self._seen[name] = _Seen(version, self._clock())

    def _expired(self, name: str, spec: dict[str, Any]) -> bool:
        seen = self._seen.get(name)
        duration = float(spec.get("leaseDurationSeconds") or self.options.lease_duration)
        return seen is None or self._clock() - seen.since > duration

    def _holder(self, leases: dict[str, dict[str, Any]], shard: int) -> str:
        return str((leases.get(shard_lease_name(shard)) or {}).get("holderIdentity") or "")

    def _free(self, leases: dict[str, dict[str, Any]], shard: int) -> bool:
        name = shard_lease_name(shard)
        spec = leases.get(name)
        return spec is None or not spec.get("holderIdentity") or self._expired(name, spec)

    def _write_shard(self, shard: int, spec: dict[str, Any] | None, *, take: bool) -> bool:
        """Renew or take (``take``) or hand back a shard Lease; True if we hold it afterwards.

        A hand-back stops our claim before the write, so nobody can take the shard while we
        still think we hold it. A failed renewal (API unreachable) leaves the claim to lapse at
        its deadline; a lost race (409) ends it at once."""
        name = shard_lease_name(shard)
        was = self._drop(shard) if not take else shard in self._renewed
        sent = self._clock()
        try:
            if spec is None:
                self._create(name, labels={KIND_LABEL: "shard"})
            else:
                self._put(name, spec["_obj"], holder=self.options.identity if take else None)
        except KubeError as e:
            if not e.conflict:
                raise
            log.info("shard %d: another replica wrote its lease first", shard)
            self._drop(shard)
            take = False
        except UnreachableError:
            return False
        if take:
            with self._mutex:
                self._renewed[shard] = sent
        if was != take:
            self.metrics.rebalances.inc()
            log.info(
                "shard %d %s (lease %s/%s)", shard, "taken" if take else "handed back", self.options.namespace, name
            )
        return take

    def _drop(self, shard: int) -> bool:
        """End our claim on ``shard``; whether we had one."""
        with self._mutex:
            return self._renewed.pop(shard, None) is not None

    def _write_member(self) -> None:
        name = member_lease_name(self.options.identity)
        cur = self._kube.get_or_none(f"{self._collection}/{name}")
        if cur is None:
            self._create(name, labels={KIND_LABEL: "member"})
        else:
            self._put(name, cur, holder=self.options.identity)

    def _spec(self, *, holder: str | None, previous: dict[str, Any]) -> dict[str, Any]:
        now = _micro(self._wall())
        same = previous.get("holderIdentity") == holder and holder
        return {
            "holderIdentity": holder,
            "leaseDurationSeconds": int(self.options.lease_duration),
            "renewTime": now if holder else None,
            "acquireTime": previous.get("acquireTime") if same else (now if holder else None),
            "leaseTransitions": int(previous.get("leaseTransitions") or 0) + (0 if same or not holder else 1),
        }

    def _create(self, name: str, *, labels: dict[str, str]) -> None:
        metadata = {"name": name, "namespace": self.options.namespace, "labels": labels}
        spec = self._spec(holder=self.options.identity, previous={})
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        self._kube.request("POST", self._collection, body=body, timeout=self._timeout())

    def _put(self, name: str, obj: dict[str, Any], *, holder: str | None) -> None:
        """Replace the Lease as read (its resourceVersion is the optimistic lock)."""
        body = {**obj, "spec": self._spec(holder=holder, previous=obj.get("spec") or {})}
        self._kube.request("PUT", f"{self._collection}/{name}", body=body, timeout=self._timeout())

    def _timeout(self) -> tuple[float, float]:
        # A hung request must not outlive the claim it renews.
        return (3.0, max(1.0, self.options.renew_deadline - self.options.retry_period))
