"""The ``reconciler`` command line: one module per command group, registered on ``app.cli`` when imported."""

from reconciler.cli import check, eks, run, syncing, version
from reconciler.cli.app import cli, main

__all__ = ["check", "cli", "eks", "main", "run", "syncing", "version"]
