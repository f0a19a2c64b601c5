"""A quiet interval costs no API request (issue 15), and the drift watch still answers at once:
a real controller process, counted through its own /metrics."""

from __future__ import annotations

import re
import time
from typing import Any

from controllers import Env, cm


def calls(metrics: str) -> dict[str, float]:
    """reconciler_api_calls_total by "verb resource", watches left out (they stay open)."""
    out: dict[str, float] = {}
    for resource, verb, value in re.findall(
        r'^reconciler_api_calls_total\{resource="([^"]*)",verb="([^"]*)"\} (\S+)$', metrics, re.M
    ):
        out[f"{verb} {resource}"] = float(value)
    return {k: v for k, v in out.items() if not k.startswith("watch ")}


def reconciles(metrics: str) -> float:
    return sum(float(v) for v in re.findall(r"^reconciler_reconcile_total\{[^}]*\} (\S+)$", metrics, re.M))


def test_quiet_intervals_send_nothing_and_a_deletion_is_still_put_back(
    env: Env, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    git_repo.commit({"app/a.yaml": cm("a", ns, {"v": "1"}), "app/b.yaml": cm("b", ns, {"v": "1"})}, "first")
    ctl = env.start("--watch-namespace", ns)
    env.gitsync(ns, "app", git_repo.url, path="app", interval="1s")
    eventually(lambda: env.ready(ns, "app"), 60, "GitSync app to become Ready")
    time.sleep(3)  # the drift watch of ConfigMaps lists; the next full sync sets a baseline it vouches for
    before = ctl.metrics()
    time.sleep(4)  # about four intervals
    after = ctl.metrics()
    assert reconciles(after) - reconciles(before) >= 2, "the intervals ran"
    sent = {k: v - calls(before).get(k, 0.0) for k, v in calls(after).items() if v != calls(before).get(k, 0.0)}
    assert sent == {}, f"a quiet interval sent requests: {sent}"

    # the watch vouches no more once something changed: deleted by hand, put back within seconds
    env.kube.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/b")
    eventually(lambda: env.kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/b"), 20, "b to be re-created")
