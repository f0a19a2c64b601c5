"""Leader election on a coordination.k8s.io Lease.

Two replicas run for availability; only the holder of the Lease reconciles. A standby
takes over once the holder has not renewed for ``duration`` seconds. Our own loop
rather than the client library's: that one blocks a thread and never releases the
Lease on shutdown, which would make every rolling update wait a full lease duration.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from reconciler.kube import paths
from reconciler.kube.client import Kube, KubeError, UnreachableError

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(s: str | None) -> dt.datetime | None:
    if not s:
        return None
    return dt.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _now,
    ) -> None:
        """``clock`` (monotonic seconds) judges expiry; ``wall`` only stamps renewTime for readers.
        Both are injectable so a clock jump can be tested without waiting for one."""
        self._kube, self.namespace, self.name, self.identity = kube, namespace, name, identity
        self.duration, self.renew = duration, renew
        self._clock, self._wall = clock, wall
        self._renewed_at = float("-inf")  # clock() when our last successful write was sent
        self.is_leader = threading.Event()
        self._stop = threading.Event()
        # Expiry is judged by when *we* last saw the Lease change, on our monotonic clock, as
        # client-go does: another node's wall clock may be skewed.
        self._observed: tuple[Any, ...] = ()
        self._observed_at = 0.0
        self._path = paths.api_path(
            group="coordination.k8s.io", version="v1", resource="leases", namespace=namespace, name=name
        )

    def _try(self) -> bool:
        now = self._wall()
        timeout = (3.0, max(1.0, self.renew))  # a hung request must not outlive our claim
        cur: dict[str, Any] | None = None
        try:
            cur = self._kube.request("GET", self._path, timeout=timeout)
        except KubeError as e:
            if not e.not_found:
                raise
        spec = (cur or {}).get("spec") or {}
        holder = spec.get("holderIdentity")
        seen = (holder, spec.get("renewTime"), (cur or {}).get("metadata", {}).get("resourceVersion"))
        if seen != self._observed:
            self._observed, self._observed_at = seen, self._clock()
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = _parse(spec.get("renewTime")) is None or self._clock() - self._observed_at > duration
        if cur is not None and holder not in (None, "", self.identity) and not expired:
            return False
        new_spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration),
            "renewTime": _fmt(now),
            "acquireTime": spec.get("acquireTime") if holder == self.identity else _fmt(now),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1),
        }
        metadata: dict[str, Any] = {"name": self.name}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": new_spec}
        sent = self._clock()
        if cur is None:
            self._kube.request("POST", self._path.rsplit("/", 1)[0], body=body, timeout=timeout)
        else:
            metadata["resourceVersion"] = cur["metadata"]["resourceVersion"]  # optimistic lock
            self._kube.request("PUT", self._path, body=body, timeout=timeout)
        self._renewed_at = sent
        return True

    def leading(self) -> bool:
        """True while we hold the Lease and our last renewal was sent less than the renew deadline
        (``duration - renew``) ago.

        :attr:`is_leader` alone is only cleared by the next round, so a process that was frozen
        (SIGSTOP, a paused VM, a long GC) or whose monotonic clock leapt would keep acting as
        leader after a standby, seeing no renewal for ``duration``, took over. A standby judges
        from when it saw our last write, which is after we sent it: stopping ``renew`` seconds
        before ``duration`` is on the safe side of that.
        """
        deadline = max(self.renew, self.duration - self.renew)
        return self.is_leader.is_set() and self._clock() - self._renewed_at < deadline

    def run(self) -> None:
        """Loop until :meth:`stop`; sets/clears :attr:`is_leader`."""
        while not self._stop.is_set():
            try:
                ok = self._try()
            except (KubeError, UnreachableError) as e:
                ok = False
                log.warning("leader election: %s", e)
            if ok and not self.is_leader.is_set():
                log.info("became leader (lease %s/%s)", self.namespace, self.name)
                self.is_leader.set()
            elif not ok and self.is_leader.is_set():
                log.error("lost leadership (lease %s/%s); stopping reconciles", self.namespace, self.name)
                self.is_leader.clear()
            self._stop.wait(self.renew if ok else self.renew / 2)

    def stop(self) -> None:
        """Stop, and hand the Lease back at once so a standby need not wait for it to expire."""
        self._stop.set()
        if not self.is_leader.is_set():
            return
        self.is_leader.clear()
        try:
            cur = self._kube.get_or_none(self._path)
            if cur and (cur.get("spec") or {}).get("holderIdentity") == self.identity:
                cur["spec"]["holderIdentity"] = None
                cur["spec"]["renewTime"] = None
                self._kube.request("PUT", self._path, body=cur)
        except (KubeError, UnreachableError) as e:
            log.warning("could not release the lease: %s", e)
