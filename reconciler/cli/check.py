"""``reconciler check``: policies judged offline, for CI before a push."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from reconciler.cli.app import cli
from reconciler.cli.common import (
    fail,
    render_options,
    substitution,
)
from reconciler.cli.decrypting import decrypt_options, decryption
from reconciler.policy import checking


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--policies",
    "policies_dir",
    type=click.Path(exists=True, path_type=Path),
    default=Path("policies"),
    show_default=True,
    help="ValidatingAdmissionPolicies, their bindings and params (a folder or a file).",
)
@click.option(
    "-o", "--output", type=click.Choice(checking.OUTPUTS), default="table", show_default=True, help="Report format."
)
@render_options
@decrypt_options
def check(path: Path, policies_dir: Path, output: str, **kw: Any) -> None:
    """Check rendered objects against policies, offline (exit 1 on a Deny violation).

    Renders PATH as a sync would and judges every object with the ValidatingAdmissionPolicies
    in --policies, without a cluster.  Exit 0 if nothing is denied (warnings are printed),
    1 on a Deny violation, 2 on an error (a policy or manifest that cannot be loaded).
    """
    try:
        substitute = substitution(kw)
        keys = decryption(kw)
    except click.BadParameter as e:
        fail("check", [str(e)])
    text, code = checking.check(
        path,
        policies=policies_dir,
        output=output,
        substitute=substitute,
        target_namespace=kw["target_namespace"],
        decryption=keys,
    )
    click.echo(text, nl=False)
    sys.exit(code)
