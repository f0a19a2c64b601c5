"""examples/fleet/charts: the addons as chart references are valid GitSyncs (our CRD's schema and our
parser agree), their values files exist in the repository, and valuesFrom reads keys that the
fleet's cluster-vars ConfigMaps have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_addon_fleet_gitsyncs import schema_errors

from reconciler.gitsync.helmspec import ChartOrigin, parse_helm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "fleet" / "charts" / "gitsyncs.yaml"
CRD = ROOT / "deploy" / "crd-gitsync.yaml"


def gitsyncs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLES.read_text()) if d]


def test_the_three_addons_of_issue_14_are_there() -> None:
    assert [g["metadata"]["name"] for g in gitsyncs()] == ["cluster-autoscaler", "external-dns", "metrics-server"]


@pytest.mark.parametrize("gitsync", gitsyncs(), ids=lambda g: g["metadata"]["name"])
def test_each_is_valid_and_parses(gitsync: dict[str, Any]) -> None:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert schema_errors(gitsync, version["schema"]["openAPIV3Schema"]) == []
    spec = parse_helm(gitsync["spec"]["helm"], gitsync_name=gitsync["metadata"]["name"])
    assert spec.chart.origin is ChartOrigin.REPOSITORY
    assert spec.chart.chart == gitsync["metadata"]["name"]  # the upstream chart name
    for path in spec.values_files:
        assert (ROOT / path).is_file(), path
    for cluster in ("dev", "prod"):
        cluster_vars = yaml.safe_load((ROOT / "examples/fleet/gitsyncs" / cluster / "cluster-vars.yaml").read_text())
        for ref in spec.values_from:
            assert ref.name == cluster_vars["metadata"]["name"]
            assert ref.values_key in cluster_vars["data"], (cluster, ref)
