"""The CLI surface: help for every command, version, honest 'not implemented yet'."""

from __future__ import annotations

import click
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


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, command in group.commands.items():
        out.append((prefix + name, command))
        if isinstance(command, click.Group):
            out.extend(_commands(command, prefix + name + " "))
    return out


@pytest.mark.parametrize(("name", "command"), _commands(cli.cli), ids=lambda x: x if isinstance(x, str) else "")
def test_every_option_is_declared_once(name: str, command: click.Command) -> None:
    """Option groups are stacked (source, cluster, policy...): two of them declaring the same
    flag would make one silently shadow the other (``--region`` of a bucket vs an EKS cluster)."""
    flags = [opt for p in command.params for opt in (*p.opts, *p.secondary_opts)]
    assert len(flags) == len(set(flags)), sorted({f for f in flags if flags.count(f) > 1})


def test_a_malformed_allow_eks_target_is_refused_at_start() -> None:
    r = CliRunner().invoke(cli.cli, ["run", "--allow-eks-target", "prod", "--metrics-addr", "", "--health-addr", ""])
    assert r.exit_code == 2
    assert "Invalid value for --allow-eks-target: 'prod' is not CLUSTER/REGION" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow-eks-target", "team-a=prod"], "'prod' is not CLUSTER/REGION"),
        (["--allow-bucket", "manifests"], "expected NAMESPACE=VALUE"),
        (["--allow-bucket-endpoint", "=http://x"], "with both parts set"),
        (["--platform-service-account", "reconciler-apply"], "expected NAMESPACE/NAME"),
        (["--platform-namespace", "Kube_System"], "not a valid namespace name"),
        (["--default-service-account", "x/../admin"], "not a valid object name"),
    ],
)
def test_a_malformed_tenancy_flag_is_refused_at_start(args: list[str], message: str) -> None:
    r = CliRunner().invoke(cli.cli, ["run", *args, "--metrics-addr", "", "--health-addr", ""])
    assert r.exit_code == 2, r.output
    assert message in r.output
