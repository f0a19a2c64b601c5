"""Every object the example fleet renders to passes the default policies (no Deny), for dev and
prod, with each cluster's values: the exceptions the node agents need live in policies/."""

from __future__ import annotations

import json

import pytest
from test_addon_stack import cluster_vars
from test_render_support import ROOT, kustomize_bin  # noqa: F401 (a fixture)

from reconciler.policy import checking


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_fleet_passes_the_default_policies(env: str, kustomize_bin: str) -> None:  # noqa: F811
    text, code = checking.check(
        ROOT / "examples" / "fleet" / "clusters" / env,
        policies=ROOT / "policies",
        output="json",
        substitute=cluster_vars(env),
    )
    assert code == 0, text
    report = json.loads(text)
    denied = [v for v in report["violations"] if v["action"] == "Deny"]
    assert denied == []
    assert report["objects"] > 100
