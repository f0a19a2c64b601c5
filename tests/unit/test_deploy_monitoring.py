"""deploy/monitoring/: the alert rules pass promtool and fire when documented, and the Grafana
dashboard queries only metrics the controller exports.

promtool comes from Debian's ``prometheus`` package (``scripts/install-deps``). A missing
promtool FAILS these tests: skipping would let broken rules ship unnoticed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"

# Exactly what the controller exports (issue 4; reconciler/report/). Histograms are only
# queryable through their _bucket/_sum/_count series, counters through _total.
_HISTOGRAMS = ("reconciler_reconcile_duration_seconds", "reconciler_git_fetch_duration_seconds")
EXPORTED = {
    "reconciler_reconcile_total",
    "reconciler_gitsync_ready",
    "reconciler_gitsync_stalled",
    "reconciler_drift_objects",
    "reconciler_last_success_timestamp_seconds",
    "reconciler_gitsync_interval_seconds",
    "reconciler_applied_revision_info",
    "reconciler_managed_objects",
    "reconciler_api_requests_total",
    "reconciler_webhook_requests_total",
    "reconciler_policy_violations",
    "reconciler_build_info",
} | {h + suffix for h in _HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}

# What the dashboard must show (issue 4): sync state, revisions, durations, drift, ...
REQUIRED_ON_DASHBOARD = {
    "reconciler_gitsync_ready",
    "reconciler_gitsync_stalled",
    "reconciler_applied_revision_info",
    "reconciler_reconcile_duration_seconds_bucket",
    "reconciler_reconcile_total",
    "reconciler_drift_objects",
    "reconciler_managed_objects",
    "reconciler_api_requests_total",
    "reconciler_git_fetch_duration_seconds_bucket",
    "reconciler_webhook_requests_total",
}

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"inf", "nan", "Inf", "NaN", "atan2"}


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression (Grafana variables allowed) selects."""
    if m := re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr, re.DOTALL):
        expr = m[1]  # Grafana's label_values(<selector>, <label>): only the selector is PromQL
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables ($__rate_interval, ${namespace})
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # unit of a duration or exponent of a number (5m, 1e3)
        if s[m.end() :].lstrip().startswith("(") or m[0] in _KEYWORDS:
            continue  # function or aggregation call, or an operator keyword
        names.add(m[0])
    return names


def _promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: install Debian's `prometheus` package (scripts/install-deps)")
    return found


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MONITORING / name).read_text())
    return doc


def _dashboard() -> dict[str, Any]:
    cm = _load("grafana-dashboard.yaml")
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = cm["data"].values()
    board: dict[str, Any] = json.loads(text)
    return board


def _dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target (rows' nested panels too) and query variable."""
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p['title']!r} target {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(board["panels"])
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var["query"]
            out.append((f"variable {var['name']}", q["query"] if isinstance(q, dict) else q))
    return out


def _rule_groups() -> list[dict[str, Any]]:
    rule = _load("prometheusrule.yaml")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in _rule_groups() for r in g["rules"] if "alert" in r}


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


# --- the metric-name checker itself must be able to fail ----------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (verb) (rate(reconciler_api_requests_total{verb="get"}[5m]))', {"reconciler_api_requests_total"}),
        ("rate(process_cpu_seconds_total[$__rate_interval])", {"process_cpu_seconds_total"}),
        (
            "histogram_quantile(0.95, sum by (le) (rate(reconciler_git_fetch_duration_seconds_bucket[5m])))",
            {"reconciler_git_fetch_duration_seconds_bucket"},
        ),
        ("time() - a_seconds > 3 * b_seconds offset 5m", {"a_seconds", "b_seconds"}),
        ("up == 0 or on(job) vector(1e3)", {"up"}),
        ('label_values(reconciler_gitsync_ready{namespace=~"$namespace"}, name)', {"reconciler_gitsync_ready"}),
    ],
)
def test_metric_names_finds_every_selected_metric(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


# --- PrometheusRule -----------------------------------------------------------------------


def test_prometheus_rules_pass_promtool_check(tmp_path: Path) -> None:
    promtool = _promtool()
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": _rule_groups()}))
    res = _run([promtool, "check", "rules", "rules.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 4 rules found" in res.stdout + res.stderr


def test_alerts_are_the_documented_ones_with_runbooks() -> None:
    alerts = _alerts()
    assert set(alerts) == {"GitSyncDriftDetected", "GitSyncFailing", "GitSyncStale", "GitSyncControllerDown"}
    assert alerts["GitSyncDriftDetected"]["expr"] == "reconciler_drift_objects > 0"
    assert alerts["GitSyncFailing"]["expr"] == "reconciler_gitsync_ready == 0"
    assert alerts["GitSyncFailing"]["labels"]["severity"] == "critical"
    assert alerts["GitSyncDriftDetected"]["labels"]["severity"] == "warning"
    # The one controller-level alert reads the scrape target, not our metrics.
    down = alerts.pop("GitSyncControllerDown")
    assert metric_names(down["expr"]) == {"up"}
    assert down["labels"]["severity"] == "critical"
    assert down["annotations"]["runbook_url"].endswith("docs/runbook.md#gitsynccontrollerdown")
    for name, rule in alerts.items():
        ann = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(ann), name
        assert ann["runbook_url"].split("#")[0].endswith("docs/runbook.md"), name
        assert "$labels.namespace" in ann["summary"], name
        assert "$labels.name" in ann["summary"], name
        assert metric_names(rule["expr"]) <= EXPORTED, name


def test_alerts_fire_when_documented(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires (and only then) on synthetic series."""
    promtool = _promtool()
    groups = _rule_groups()
    for g in groups:  # annotations are checked by `check rules`; here only when and with which labels
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    gs = 'namespace="apps", name="web"'
    ok = 'namespace="apps", name="ok"'
    fired = [{"exp_labels": {"namespace": "apps", "name": "web", "severity": sev}} for sev in ("warning", "critical")]
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"reconciler_drift_objects{{{gs}}}", "values": "0 0 2 2 0 0"},
                    {"series": f"reconciler_drift_objects{{{ok}}}", "values": "0x5"},
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "GitSyncDriftDetected", "exp_alerts": []},
                    {"eval_time": "2m", "alertname": "GitSyncDriftDetected", "exp_alerts": [fired[0]]},
                    {"eval_time": "4m", "alertname": "GitSyncDriftDetected", "exp_alerts": []},
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"reconciler_gitsync_ready{{{gs}}}", "values": "1 1 0x15"},
                    {"series": f"reconciler_gitsync_ready{{{ok}}}", "values": "1x16"},
                ],
                "alert_rule_test": [
                    {"eval_time": "11m", "alertname": "GitSyncFailing", "exp_alerts": []},
                    {"eval_time": "13m", "alertname": "GitSyncFailing", "exp_alerts": [fired[1]]},
                ],
            },
            {
                # interval 60s; "web" last succeeded at t=0, "ok" succeeds every minute.
                "interval": "1m",
                "input_series": [
                    {"series": f"reconciler_gitsync_interval_seconds{{{gs}}}", "values": "60x20"},
                    {"series": f"reconciler_last_success_timestamp_seconds{{{gs}}}", "values": "0x20"},
                    {"series": f"reconciler_gitsync_interval_seconds{{{ok}}}", "values": "60x20"},
                    {"series": f"reconciler_last_success_timestamp_seconds{{{ok}}}", "values": "0+60x20"},
                ],
                "alert_rule_test": [
                    # stale from 3m on (> 3 intervals), pending for 5m: not yet at 7m, firing at 9m
                    {"eval_time": "7m", "alertname": "GitSyncStale", "exp_alerts": []},
                    {
                        "eval_time": "9m",
                        "alertname": "GitSyncStale",
                        "exp_alerts": [{"exp_labels": {"namespace": "apps", "name": "web", "severity": "warning"}}],
                    },
                ],
            },
            {
                # Two replicas; both stop answering at 3m: pending for 5m, firing from 8m on.
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="reconciler", namespace="reconciler-system", pod="a"}', "values": "1 1 1 0x10"},
                    {"series": 'up{job="reconciler", namespace="reconciler-system", pod="b"}', "values": "1 1 1 0x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "GitSyncControllerDown", "exp_alerts": []},
                    {"eval_time": "7m", "alertname": "GitSyncControllerDown", "exp_alerts": []},
                    {
                        "eval_time": "9m",
                        "alertname": "GitSyncControllerDown",
                        # absent() of a filtered vector carries no labels of its own
                        "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                    },
                ],
            },
            {
                # One replica of two down: the other still reconciles, no alert.
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="reconciler", namespace="reconciler-system", pod="a"}', "values": "1x12"},
                    {"series": 'up{job="reconciler", namespace="reconciler-system", pod="b"}', "values": "1 1 0x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "GitSyncControllerDown", "exp_alerts": []},
                ],
            },
        ],
    }
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    res = _run([promtool, "test", "rules", "tests.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


# --- Grafana dashboard --------------------------------------------------------------------


def test_dashboard_references_only_exported_metrics() -> None:
    queries = _dashboard_queries(_dashboard())
    assert len(queries) >= 10
    used: set[str] = set()
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: {expr!r} selects no metric"
        unknown = names - EXPORTED
        assert not unknown, f"{where}: {expr!r} uses metrics the controller does not export: {sorted(unknown)}"
        used |= names
    missing = REQUIRED_ON_DASHBOARD - used
    assert not missing, f"the dashboard shows nothing of {sorted(missing)}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables filled in, parses in promtool."""
    promtool = _promtool()
    rules = []
    for i, (_, expr) in enumerate(_dashboard_queries(_dashboard())):
        if expr.startswith("label_values("):
            expr = expr[len("label_values(") :].rsplit(",", 1)[0]
        expr = expr.replace("$__rate_interval", "5m").replace("$namespace", ".*").replace("$name", ".*")
        assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = _run([promtool, "check", "rules", "queries.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in _dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


# --- kustomizations -----------------------------------------------------------------------


def test_core_install_needs_no_prometheus_operator() -> None:
    """`kubectl apply -k deploy/` must work on a bare cluster: operator kinds live in monitoring/."""
    core = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())["resources"]
    for res in core:
        for doc in yaml.safe_load_all((ROOT / "deploy" / res).read_text()):
            assert not doc["apiVersion"].startswith("monitoring.coreos.com/"), res
    mon = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())["resources"]
    assert sorted(mon) == ["grafana-dashboard.yaml", "prometheusrule.yaml", "servicemonitor.yaml"]
