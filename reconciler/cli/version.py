"""``reconciler version``: ours and, with --server, the cluster's."""

from __future__ import annotations

import platform
import sys
from typing import Any

import click

import reconciler
from reconciler.aws.errors import AwsError
from reconciler.cli.app import cli
from reconciler.cli.common import (
    EXIT_ERROR,
    connect_cluster,
    connection_options,
)
from reconciler.kube import client as kube_client


@cli.command()
@click.option("--server", is_flag=True, help="Also ask the API server for its version.")
@connection_options
def version(server: bool, **kw: Any) -> None:
    """Print the reconciler's version (and, with --server, the cluster's)."""
    click.echo(f"reconciler {reconciler.__version__} (python {platform.python_version()})")
    if server:
        try:
            kube = connect_cluster(kw)
            info = kube.get("/version")
        except (kube_client.ConfigError, AwsError) as e:
            click.echo(f"reconciler version: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except kube_client.UnreachableError as e:  # its message says "cannot reach the API server"
            click.echo(f"reconciler version: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except kube_client.KubeError as e:
            click.echo(f"reconciler version: cannot reach the API server: {e}", err=True)
            sys.exit(EXIT_ERROR)
        click.echo(f"server {info.get('gitVersion')} at {kube.host}")
