"""`reconciler sync --dir D --watch`: saved edits go live within seconds, bursts are debounced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from reconciler.kube import client


def cm(ns: str, value: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "watched", "namespace": ns},
            "data": {"v": value},
        }
    )


def test_watch_mode(cluster: Any, kube: client.Kube, namespace: str, tmp_path: Path, eventually: Any) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "cm.yaml").write_text(cm(namespace, "0"))
    out = tmp_path / "out.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "sync",
            "--dir",
            str(src),
            "--watch",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--name",
            "watched",
            "--namespace",
            namespace,
        ],
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    path = f"/api/v1/namespaces/{namespace}/configmaps/watched"

    def syncs() -> int:
        return sum(1 for line in out.read_text().splitlines() if line.startswith("sha256:"))

    try:
        eventually(lambda: syncs() >= 1, 30, "the first sync")
        assert kube.get(path)["data"] == {"v": "0"}

        (src / "cm.yaml").write_text(cm(namespace, "1"))
        # the rescan runs every 30 s: within 5 s only the file watch can have seen the save
        eventually(lambda: kube.get(path)["data"] == {"v": "1"}, 5, "the saved edit to go live")

        time.sleep(1)
        before = syncs()
        for i in range(50):
            (src / "cm.yaml").write_text(cm(namespace, f"burst-{i}"))
            time.sleep(0.01)
        eventually(lambda: kube.get(path)["data"] == {"v": "burst-49"}, 10, "the last edit of the burst")
        time.sleep(1.5)
        burst = syncs() - before
        assert 1 <= burst <= 5, f"50 edits caused {burst} syncs"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
