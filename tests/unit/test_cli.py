"""The CLI surface: help for every command, version, honest 'not implemented yet'."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import reconciler
from reconciler import cli

COMMANDS = ["run", "sync", "diff", "render", "check", "version"]


def test_help_lists_every_command() -> None:
    r = CliRunner().invoke(cli.cli, ["--help"])
    assert r.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in r.output


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name: str) -> None:
    r = CliRunner().invoke(cli.cli, [name, "--help"])
    assert r.exit_code == 0
    assert f"Usage: cli {name}" in r.output


def test_version() -> None:
    r = CliRunner().invoke(cli.cli, ["version"])
    assert r.exit_code == 0
    assert r.output.startswith(f"reconciler {reconciler.__version__} (python 3.")


def test_version_server_without_cluster_is_a_clear_error(tmp_path: object) -> None:
    r = CliRunner().invoke(cli.cli, ["version", "--server", "--kubeconfig", "/nonexistent/kubeconfig"])
    assert r.exit_code == 2
    assert "cannot load cluster configuration from /nonexistent/kubeconfig" in r.output
