"""Session fixtures: one real control plane for the whole test run.

The control plane is started through ``scripts/controlplane.py`` (the same code as
``make cluster``) and always stopped at the end, also when tests fail, when the run is
interrupted with Ctrl-C, or when it receives SIGTERM (CI timeouts).  If it cannot be
built or started, every integration test ERRORS: a missing cluster must never look
like a pass or a skip.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from reconciler.kube import client, discovery

ROOT = Path(__file__).resolve().parent.parent


sys.path.insert(0, str(ROOT / "scripts"))
# tests/controllers.py: fixtures for tests that run `reconciler run`; tests/reliability.py: the trial recorder
pytest_plugins = ["controllers", "reliability"]
import controlplane  # noqa: E402  (scripts/controlplane.py: the one implementation, shared with make cluster)

sys.path.insert(0, str(ROOT / "tests"))
import awsserver  # noqa: E402  (tests/awsserver.py: the moto server on loopback)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-kwok",
        action="store_true",
        default=os.environ.get("RECONCILER_TEST_KWOK") == "0",
        help="run without kwok: no Node, Pods stay Pending (env RECONCILER_TEST_KWOK=0)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, `kill`) becomes KeyboardInterrupt so fixture teardown still runs.
    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("controlplane")
    atexit.register(controlplane.down, root)  # backstop if the session is torn down abnormally
    with controlplane.running(root, kwok=not request.config.getoption("--no-kwok")) as cp:
        yield cp


@pytest.fixture(scope="session")
def kube(cluster: Any) -> Iterator[client.Kube]:
    k = client.connect(str(cluster.kubeconfig))
    yield k
    k.close()


@pytest.fixture(scope="session")
def mapper(kube: client.Kube) -> discovery.RestMapper:
    return discovery.RestMapper(kube)


@pytest.fixture
def namespace(kube: client.Kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (not waited for)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    yield name
    try:
        kube.request("DELETE", f"/api/v1/namespaces/{name}")
    except client.KubeError as e:
        if not e.not_found:
            raise


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll until ``predicate()`` returns something truthy; fail naming ``what`` otherwise."""
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


@pytest.fixture
def eventually() -> Any:
    return wait_until


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[awsserver.MotoServer]:
    """One moto server on 127.0.0.1 per session (see tests/awsserver.py); reset per test
    through the ``aws`` fixture."""
    with awsserver.moto_server() as server:
        yield server


@pytest.fixture
def aws(moto: awsserver.MotoServer, monkeypatch: pytest.MonkeyPatch) -> awsserver.MotoServer:
    """A clean moto account, and AWS_* variables in this process pointing at test credentials
    (subprocesses started with os.environ inherit them; add ``awsserver.AWS_ENV`` otherwise)."""
    moto.reset()
    for key in awsserver.AMBIENT:
        monkeypatch.delenv(key, raising=False)
    for key, value in awsserver.AWS_ENV.items():
        monkeypatch.setenv(key, value)
    return moto
