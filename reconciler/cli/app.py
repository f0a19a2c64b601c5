"""The ``reconciler`` command group and its entry point.

Exit codes follow ``kubectl diff`` and ``flux diff``: 0 ok / no change, 1 changes or
violations found, 2 error, so scripts and CI can tell "something to do" from "something broke".
"""

from __future__ import annotations

import os
import sys

import click

import reconciler
from reconciler.cli.common import EXIT_ERROR


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(reconciler.__version__, "--version", prog_name="reconciler")
def cli() -> None:
    """gitops-reconciler: pull-based GitOps for Kubernetes.

    Fetches a git repository (or S3 bucket, or folder), renders its manifests, checks
    them against policies, applies them with server-side apply, prunes what git no
    longer has, and reports every sync as conditions, Events, metrics and logs.
    """


def main() -> None:
    try:
        cli(prog_name="reconciler")
    except Exception as e:
        # An unexpected failure must still be one clear line and exit 2 (never 1, which
        # `diff` uses for "changes"); RECONCILER_DEBUG=1 shows the traceback.
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        click.echo(f"reconciler: error: {type(e).__name__}: {e} (RECONCILER_DEBUG=1 for a traceback)", err=True)
        sys.exit(EXIT_ERROR)
