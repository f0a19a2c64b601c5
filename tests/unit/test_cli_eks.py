"""--eks-cluster/--region against --kubeconfig/--context: one way to name the cluster, or a usage error.

All of these stop before any connection is attempted (click usage errors exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import cli
from reconciler.aws import ekscheck, eksupdate


@pytest.mark.parametrize("command", [["run"], ["diff", "--dir", "."], ["sync", "--dir", "."], ["version", "--server"]])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eks-cluster", "prod", "--kubeconfig", "/k"], "--eks-cluster cannot be combined with --kubeconfig"),
        (["--eks-cluster", "prod", "--context", "c"], "--eks-cluster cannot be combined with --context"),
        (["--region", "eu-west-1"], "--region is the region of --eks-cluster"),
    ],
)
def test_conflicting_cluster_flags_are_a_usage_error(command: list[str], extra: list[str], message: str) -> None:
    r = CliRunner().invoke(cli.cli, [*command, *extra])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Usage:" in r.output


def test_kubeconfig_from_the_environment_does_not_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    """KUBECONFIG is often exported by the shell; only flags on the command line clash."""
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", "http://127.0.0.1:9")  # fails fast, on loopback, if it got that far
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    r = CliRunner().invoke(cli.cli, ["version", "--server", "--eks-cluster", "prod", "--region", "eu-west-1"])
    assert r.exit_code == 2
    assert "cannot be combined" not in r.output
    assert "eks:DescribeCluster prod (eu-west-1): EndpointUnreachable" in r.output


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["eks", "sync", "--config", "c.yaml", "--poll-interval", "0"], "--poll-interval"),
        (["eks", "sync", "--config", "c.yaml", "--poll-interval", "0.5"], "--poll-interval"),
        (["run", "--eks-config", "c.yaml", "--eks-interval", "0"], "--eks-interval"),
    ],
)
def test_intervals_under_a_second_are_refused_before_any_aws_call(argv: list[str], flag: str) -> None:
    """0 would follow an update (or re-check the cluster) in a busy loop of EKS API calls."""
    r = CliRunner().invoke(cli.cli, argv)
    assert r.exit_code == 2, r.output
    assert f"Invalid value for '{flag}'" in r.output
    assert "is less than the minimum of 1s" in r.output


def test_the_controller_clamps_eks_intervals_whoever_builds_its_options() -> None:
    opts = ekscheck.EksOptions(Path("c.yaml"), {}, interval=0, wait=eksupdate.Wait(timeout=60, interval=0))
    assert (opts.interval, opts.wait) == (1.0, eksupdate.Wait(timeout=60, interval=1.0))
    assert opts.wait.config() == {"Delay": 1, "MaxAttempts": 60}
    kept = ekscheck.EksOptions(Path("c.yaml"), {}, interval=30, wait=eksupdate.Wait(interval=5))
    assert (kept.interval, kept.wait.interval) == (30, 5)


def test_eks_substitute_is_the_flag_and_eks_var_a_hidden_alias() -> None:
    """One flag name for one idea: variables are --substitute elsewhere, --eks-substitute here."""
    r = CliRunner().invoke(cli.cli, ["run", "--help"])
    assert r.exit_code == 0
    assert "--eks-substitute" in r.output
    assert "--eks-var" not in r.output


def test_eks_var_still_works_and_warns_once(tmp_path: Path) -> None:
    argv = ["run", "--eks-config", "c.yaml", "--eks-var", "A=1", "--eks-var", "B=2"]
    r = CliRunner().invoke(cli.cli, [*argv, "--kubeconfig", str(tmp_path / "none"), "--metrics-addr", ""])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("--eks-var is deprecated; use --eks-substitute") == 1
    assert "cannot load cluster configuration" in r.stderr, "it got past the flags, to the connection"


@pytest.mark.parametrize("flag", ["--eks-substitute", "--eks-var"])
def test_a_malformed_eks_substitution_names_its_flag(flag: str) -> None:
    r = CliRunner().invoke(cli.cli, ["run", "--eks-config", "c.yaml", flag, "CLUSTER_NAME"])
    assert r.exit_code == 2, r.output
    assert f"Invalid value for {flag}: expected NAME=VALUE, got 'CLUSTER_NAME'" in r.stderr


def test_eks_substitute_and_its_old_name_fill_the_same_variables() -> None:
    from reconciler.cli import run

    kw = {
        "eks_config": Path("c.yaml"),
        "eks_vars": ("A=old", "B=old"),
        "eks_substitute": ("B=new", "C=new"),
        "eks_interval": 60.0,
        "eks_drift": "warn",
        "eks_region": None,
    }
    opts = run._eks_options(kw)
    assert opts is not None
    assert opts.variables == {"A": "old", "B": "new", "C": "new"}, "the new name wins where both set one"


def _unreachable_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS calls fail at once, on loopback: the tests below only need the config to be read."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_EKS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNITTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")


CONFIG = Path(__file__).resolve().parents[2] / "manifests" / "cluster" / "cluster.yaml"


@pytest.mark.parametrize("command", ["diff", "sync"])
def test_eks_takes_variables_as_substitute_like_every_other_command(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unreachable_aws(monkeypatch)
    argv = ["eks", command, "--config", str(CONFIG), "--substitute", "CLUSTER_NAME=prod"]
    r = CliRunner().invoke(cli.cli, [*argv, "--substitute", "AWS_REGION=eu-west-1"])
    assert r.exit_code == 2, r.output
    assert "eks:DescribeCluster prod (eu-west-1): EndpointUnreachable" in r.output
    assert "deprecated" not in r.output


def test_var_is_a_hidden_deprecated_alias_that_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _unreachable_aws(monkeypatch)
    argv = ["eks", "diff", "--config", str(CONFIG), "--var", "CLUSTER_NAME=old", "--var", "AWS_REGION=eu-west-1"]
    r = CliRunner().invoke(cli.cli, [*argv, "--substitute", "CLUSTER_NAME=prod"])
    assert r.exit_code == 2, r.output
    assert r.output.count("--var is deprecated; use --substitute") == 1
    assert "eks:DescribeCluster prod (eu-west-1): EndpointUnreachable" in r.output  # --substitute wins
    help_text = CliRunner().invoke(cli.cli, ["eks", "diff", "--help"]).output
    assert "--substitute" in help_text
    assert "--var" not in help_text
