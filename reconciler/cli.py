"""The ``reconciler`` command line.

Exit codes follow ``kubectl diff`` and ``flux diff``: 0 ok / no change, 1 changes or
violations found, 2 error (including "not implemented yet" for commands still to land),
so scripts and CI can tell "something to do" from "something broke".
"""

from __future__ import annotations

import platform
import sys
from typing import NoReturn

import click

import reconciler
from reconciler.kube import client as kube_client

EXIT_ERROR = 2


def _not_implemented(command: str) -> NoReturn:
    click.echo(f"reconciler {command}: not implemented yet", err=True)
    sys.exit(EXIT_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(reconciler.__version__, "--version", prog_name="reconciler")
def cli() -> None:
    """gitops-reconciler: pull-based GitOps for Kubernetes.

    Fetches a git repository (or S3 bucket, or folder), renders its manifests, checks
    them against policies, applies them with server-side apply, prunes what git no
    longer has, and reports every sync as conditions, Events, metrics and logs.
    """


@cli.command()
def run() -> None:
    """Run the controller: reconcile every GitSync object in the cluster."""
    _not_implemented("run")


@cli.command()
def sync() -> None:
    """Sync a path or repository into the cluster once, then exit."""
    _not_implemented("sync")


@cli.command()
def diff() -> None:
    """Show what a sync would change, without changing anything (exit 1 if it would)."""
    _not_implemented("diff")


@cli.command()
def render() -> None:
    """Print the objects a path renders to, offline."""
    _not_implemented("render")


@cli.command()
def check() -> None:
    """Check rendered objects against policies, offline (exit 1 on a Deny violation)."""
    _not_implemented("check")


@cli.command()
@click.option("--server", is_flag=True, help="Also ask the API server for its version.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), envvar="KUBECONFIG", help="Kubeconfig file.")
@click.option("--context", "context", default=None, help="Kubeconfig context to use.")
def version(server: bool, kubeconfig: str | None, context: str | None) -> None:
    """Print the reconciler's version (and, with --server, the cluster's)."""
    click.echo(f"reconciler {reconciler.__version__} (python {platform.python_version()})")
    if server:
        try:
            kube = kube_client.connect(kubeconfig, context)
            info = kube.get("/version")
        except kube_client.ConfigError as e:
            click.echo(f"reconciler version: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except (kube_client.KubeError, kube_client.UnreachableError) as e:
            click.echo(f"reconciler version: cannot reach the API server: {e}", err=True)
            sys.exit(EXIT_ERROR)
        click.echo(f"server {info.get('gitVersion')} at {kube.host}")


def main() -> None:
    cli(prog_name="reconciler")
