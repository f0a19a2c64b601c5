"""Real git servers as fixtures: a bare repository per test, and one sshd per session.

Kept general on purpose: the sync tests use them as much as the git source's own tests.
A missing sshd is an ERROR, never a skip: the ssh path would otherwise go untested unnoticed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ holds gitserver.py

import gitserver


@pytest.fixture
def git_repo(tmp_path: Path) -> gitserver.BareRepo:
    """An empty bare repository (default branch ``main``): ``.commit({path: text | None}, msg)``,
    ``.tag``, ``.annotated_tag``, ``.revert``, ``.head()``; fetch it from ``.url`` (file://)."""
    return gitserver.BareRepo(tmp_path / "repo.git")


@pytest.fixture(scope="session")
def ssh_git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gitserver.SSHServer]:
    """sshd on 127.0.0.1: ``.url_for(repo.path)``, ``.private_key``, ``.known_hosts``,
    ``.wrong_known_hosts`` (same host, another key) and ``.unknown_known_hosts`` (another host)."""
    with gitserver.SSHServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def https_git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gitserver.HTTPSGitServer]:
    """``git http-backend`` over https on 127.0.0.1, for any repository on this machine:
    ``.url_for(repo.path)``, ``.ca_pem``, basic auth ``.username``/``.password``, bearer ``.token``."""
    with gitserver.HTTPSGitServer(tmp_path_factory.mktemp("https")) as server:
        yield server
