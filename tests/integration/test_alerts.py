"""Drift alerts through real Prometheus (with the rules from deploy/) and real Alertmanager,
both Debian's, on loopback, against a real controller process."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from controllers import ROOT, Env, ProcessGroup, _edit, cm, free_port, http_ok


@dataclass
class Monitoring:
    am_port: int
    prom_port: int
    metrics_port: int

    def alerts(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.am_port}/api/v2/alerts?active=true&silenced=false&inhibited=false"
        with urllib.request.urlopen(url, timeout=5) as r:
            return list(json.load(r))

    def firing(self, alertname: str, ns: str, source: str | None) -> list[dict[str, Any]]:
        out = []
        for a in self.alerts():
            labels = a["labels"]
            if labels.get("alertname") != alertname or labels.get("namespace") != ns:
                continue
            if a["status"]["state"] != "active":
                continue
            if source == "controller" and labels.get("source") != "gitops-reconciler":
                continue
            if source == "prometheus" and labels.get("source") == "gitops-reconciler":
                continue
            out.append(a)
        return out


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-deps (Debian prometheus / prometheus-alertmanager)")
    return path


@pytest.fixture
def monitoring(tmp_path: Path) -> Iterator[Monitoring]:
    m = Monitoring(free_port(), free_port(), free_port())
    (tmp_path / "am.yml").write_text(
        yaml.safe_dump(
            {
                "route": {"receiver": "null", "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
                "receivers": [{"name": "null"}],
            }
        )
    )
    rule = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheusrule.yaml").read_text())
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / "prom.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{m.am_port}"]}]}]},
                "scrape_configs": [
                    {
                        "job_name": "reconciler",
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{m.metrics_port}"]}],
                    }
                ],
            }
        )
    )
    with ProcessGroup(tmp_path) as procs:
        procs.start(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{m.am_port}",
                "--cluster.listen-address=",
            ],
        )
        procs.start(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={tmp_path / 'prom.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address=127.0.0.1:{m.prom_port}",
            ],
        )
        for port, path in ((m.am_port, "/-/ready"), (m.prom_port, "/-/ready")):
            deadline = time.monotonic() + 30
            while not http_ok(f"http://127.0.0.1:{port}{path}"):
                if time.monotonic() > deadline:
                    pytest.fail(f"127.0.0.1:{port} did not become ready; logs:\n{procs.tail()}")
                time.sleep(0.2)
        yield m


def test_drift_alert_fires_in_alertmanager_and_resolves(
    env: Env, monitoring: Monitoring, git_repo: Any, namespace: str, eventually: Any
) -> None:
    ns = namespace
    git_repo.commit({"cm.yaml": cm("watched", ns, {"mode": "git"})})
    env.start(
        "--watch-namespace",
        ns,
        "--alertmanager-url",
        f"http://127.0.0.1:{monitoring.am_port}",
        metrics_port=monitoring.metrics_port,
    )
    env.gitsync(ns, "alerting", git_repo.url, interval="2s", drift={"mode": "warn"})
    eventually(lambda: env.ready(ns, "alerting"), 30, "the first sync")

    _edit(env.kube, f"/api/v1/namespaces/{ns}/configmaps/watched", {"data": {"mode": "by-hand"}})
    eventually(
        lambda: monitoring.firing("GitSyncDriftDetected", ns, "controller"),
        10,
        "the controller's own alert in Alertmanager",
    )
    eventually(
        lambda: monitoring.firing("GitSyncDriftDetected", ns, "prometheus"),
        20,
        "Prometheus (rules from deploy/) to fire GitSyncDriftDetected into Alertmanager",
    )
    alert = monitoring.firing("GitSyncDriftDetected", ns, "prometheus")[0]
    assert alert["labels"]["name"] == "alerting"
    assert alert["labels"]["severity"] == "warning"

    # a new revision corrects the drift (warn mode applies new revisions): both alerts resolve
    git_repo.commit({"cm.yaml": cm("watched", ns, {"mode": "git", "v": "2"})}, "new revision")
    eventually(
        lambda: not monitoring.firing("GitSyncDriftDetected", ns, "controller"), 15, "the controller's alert to resolve"
    )
    eventually(lambda: not monitoring.firing("GitSyncDriftDetected", ns, None), 30, "every drift alert to resolve")
