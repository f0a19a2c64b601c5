"""``reconciler eks diff|sync``: the EKS cluster itself against an eksctl ClusterConfig."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler.aws import clusterconfig, eks, ekscheck, eksreport, eksupdate
from reconciler.aws.errors import AwsError
from reconciler.cli.app import cli
from reconciler.cli.common import (
    EXIT_CHANGES,
    EXIT_OK,
    Duration,
    fail,
    parse_pairs,
)
from reconciler.render import document
from reconciler.render.manifests import ManifestError
from reconciler.report import table


@cli.group("eks")
def eks_group() -> None:
    """Drift of the EKS cluster itself (version, logging, node groups, addons) against an eksctl ClusterConfig.

    The endpoint is botocore's: AWS_ENDPOINT_URL_EKS or AWS_ENDPOINT_URL, else AWS's own.
    See docs/eks.md.
    """


def eks_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--config",
            "config_path",
            required=True,
            type=click.Path(dir_okay=False, path_type=Path),
            help="The eksctl ClusterConfig, e.g. manifests/cluster/cluster.yaml.",
        ),
        click.option(
            "--substitute",
            "variables",
            multiple=True,
            metavar="NAME=VALUE",
            help="Value for ${NAME} in the ClusterConfig (repeatable), as on render/sync/diff/check.",
        ),
        # The old name of --substitute: kept so scripts keep working, hidden from --help, warned about.
        click.option("--var", "deprecated_vars", multiple=True, metavar="NAME=VALUE", hidden=True),
        click.option("--region", default=None, help="AWS region [default: the config's metadata.region]."),
        click.option(
            "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Format."
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _variables(kw: dict[str, Any]) -> dict[str, str]:
    """``--substitute`` values, after those of the deprecated ``--var`` (one warning, however many)."""
    values = {}
    if kw["deprecated_vars"]:
        click.echo("reconciler: warning: --var is deprecated; use --substitute NAME=VALUE", err=True)
        values.update(parse_pairs(kw["deprecated_vars"], "--var"))
    values.update(parse_pairs(kw["variables"], "--substitute"))
    return values


def _eks_config(command: str, kw: dict[str, Any]) -> clusterconfig.ClusterConfig:
    try:
        variables = _variables(kw)
        cfg = clusterconfig.parse(document.load(kw["config_path"], variables), str(kw["config_path"]))
    except (click.BadParameter, ManifestError, clusterconfig.ClusterConfigError) as e:
        fail(command, [str(e)])
    return dataclasses.replace(cfg, region=kw["region"]) if kw["region"] else cfg


@eks_group.command("diff")
@eks_options
def eks_diff(**kw: Any) -> None:
    """List the fields where the EKS cluster differs from the ClusterConfig, changing nothing.

    Exit 0: no differences; 1: differences; 2: error.
    """
    cfg = _eks_config("eks diff", kw)
    try:
        drift = eks.check(eks.client(cfg.region), cfg)
    except AwsError as e:
        fail("eks diff", [str(e)])
    if kw["output"] == "json":
        click.echo(eksreport.to_json(eksreport.document(drift)), nl=False)
    elif drift.findings:
        click.echo(table.aligned(eksreport.HEADER, eksreport.rows(drift.findings)), nl=False)
    click.echo(f"EKS {cfg.name} ({cfg.region}): {len(drift.findings)} difference(s)", err=True)
    sys.exit(EXIT_CHANGES if drift.findings else EXIT_OK)


@eks_group.command("sync")
@eks_options
@click.option(
    "--timeout", type=Duration(), default="1h", show_default=True, help="Limit to follow each EKS update (30m, 1h...)."
)
@click.option(
    "--poll-interval",
    type=Duration(minimum=ekscheck.MIN_POLL_INTERVAL),
    default="15s",
    show_default=True,
    help="Time between DescribeUpdate calls (at least 1s: less is a busy loop against the EKS API).",
)
def eks_sync(timeout: float, poll_interval: float, **kw: Any) -> None:
    """Correct what can change in place (UpdateClusterConfig/Version, UpdateNodegroupConfig, Create/UpdateAddon).

    Each update is followed to completion, then the cluster is described again.
    Exit 0: the cluster matches; 1: differences remain that need eksctl (replacement,
    creation, a downgrade); 2: error.
    """
    cfg = _eks_config("eks sync", kw)
    as_table = kw["output"] == "table"

    def applied(a: eks.Applied) -> None:
        if as_table:
            fields = ", ".join(f.field for f in a.change.findings)
            click.echo(f"{a.change.call} {a.change.resource}: {fields}: {a.status}")

    try:
        res = eks.sync(eks.client(cfg.region), cfg, wait=eksupdate.Wait(timeout, poll_interval), on_applied=applied)
    except AwsError as e:
        fail("eks sync", [str(e)])
    left = res.after.findings
    if not as_table:
        done = [
            {
                "call": a.change.call,
                "resource": a.change.resource,
                "status": a.status,
                "findings": [f.as_dict() for f in a.change.findings],
            }
            for a in res.applied
        ]
        click.echo(eksreport.to_json({"applied": done, "remaining": eksreport.document(res.after)}), nl=False)
    elif left:
        click.echo(table.aligned(eksreport.HEADER, eksreport.rows(left)), nl=False)
    click.echo(
        f"EKS {cfg.name} ({cfg.region}): {len(res.applied)} correction(s) applied, {len(left)} difference(s) left",
        err=True,
    )
    sys.exit(EXIT_CHANGES if left else EXIT_OK)
