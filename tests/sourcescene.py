"""One GitSync syncing two ConfigMaps from a source, and the promises a source fault may not break.

Shared by the modules that inject faults between the controller and its sources
(test_source_faults.py, test_git_faults.py, test_s3_faults.py): each trial checks that the last
good revision stays live and listed, that the failure is reported by reason, and records itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controllers import Env, cm
from reliability import Recorder

from reconciler.sync import inventory

NAME = "app"


@dataclass
class Scene:
    """One GitSync ``app`` syncing ConfigMaps a and b from ``app/``; what a fault may not change."""

    env: Env
    ns: str
    eventually: Any

    def status(self) -> dict[str, Any]:
        return (self.env.get(self.ns, NAME) or {}).get("status") or {}

    def failed(self, reason: str, needle: str, *, regex: bool = False) -> Callable[[], dict[str, Any] | None]:
        """A check for Ready=False with ``reason`` and a message containing ``needle`` (a
        regular expression searched in it when ``regex``)."""

        def check() -> dict[str, Any] | None:
            ready = [c for c in self.status().get("conditions", []) if c["type"] == "Ready"]
            if not ready or ready[0]["status"] != "False" or ready[0]["reason"] != reason:
                return None
            message = ready[0]["message"]
            found = re.search(needle, message) if regex else needle in message
            return ready[0] if found else None

        return check

    def live(self) -> dict[str, dict[str, str]]:
        items = self.env.kube.get(f"/api/v1/namespaces/{self.ns}/configmaps")["items"]
        return {o["metadata"]["name"]: o.get("data") or {} for o in items if o["metadata"]["name"] in ("a", "b", "c")}

    def listed(self) -> set[str]:
        return {o.name for o in inventory.load(self.env.kube, self.ns, NAME).entries}

    def ready_at(self, revision_tail: str, timeout: float = 40) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.env.ready(self.ns, NAME)
            st = (obj or {}).get("status") or {}
            return obj if str(st.get("lastAppliedRevision", "")).endswith(revision_tail) else None

        return dict(self.eventually(check, timeout, f"Ready at {revision_tail}"))

    def ready_after(self, old: str, timeout: float = 40) -> str:
        """The revision applied once Ready at another revision than ``old``."""

        def check() -> str | None:
            st = (self.env.ready(self.ns, NAME) or {}).get("status") or {}
            rev = str(st.get("lastAppliedRevision", ""))
            return rev if rev and rev != old else None

        return str(self.eventually(check, timeout, f"Ready at a revision after {old}"))

    def held(self, good: str, live: dict[str, dict[str, str]]) -> None:
        """The last good revision is what is applied and live, and nothing was pruned."""
        assert str(self.status().get("lastAppliedRevision", "")).endswith(good)
        assert self.live() == live
        assert self.listed() == set(live)


def files(ns: str, **data: str | None) -> dict[str, str | None]:
    return {f"app/{k}.yaml": (cm(k, ns, {"v": v}) if v is not None else None) for k, v in data.items()}


def trial(rec: Recorder, area: str, fault: str, observed: str, *, expected: str = "") -> None:
    rec.record(
        area=area,
        fault=fault,
        expected=expected
        or "last good revision stays live, nothing pruned, reason reported; recovers on its own when the fault ends",
        observed=observed,
    )
