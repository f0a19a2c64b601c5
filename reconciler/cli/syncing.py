"""``reconciler render``, ``diff`` and ``sync``: one revision checked or synced from the command line."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler import policy
from reconciler.aws.errors import AwsError
from reconciler.cli.app import cli
from reconciler.cli.common import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    Duration,
    check_name,
    cluster_options,
    connect_cluster,
    default_name,
    fail,
    open_source,
    policy_options,
    render_artifact,
    render_options,
    source_options,
)
from reconciler.kube import client as kube_client
from reconciler.kube import discovery
from reconciler.policy import checking
from reconciler.render.manifests import Manifest, ManifestError
from reconciler.report import redact, table
from reconciler.source import local_watch
from reconciler.source.artifact import Artifact, SourceError
from reconciler.sync import engine
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ObjectResult
from reconciler.sync.changeset import Action
from reconciler.sync.inventory import InventoryError
from reconciler.sync.plan import Item, Plan


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@render_options
def render(path: Path, **kw: Any) -> None:
    """Print the objects PATH renders to (YAML stream), offline."""
    try:
        root, sub = checking.checkout_root(path)
        objs = render_artifact(Artifact(revision="", path=root), {**kw, "subpath": sub})
    except (ManifestError, click.BadParameter) as e:
        fail("render", [str(e)])
    click.echo(yaml.safe_dump_all([m.obj for m in objs], sort_keys=False, explicit_start=True), nl=False)


class _FailedError(Exception):
    """Errors for the user; the caller decides whether they end the process (sync) or not (--watch)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def _collect(kw: dict[str, Any]) -> tuple[list[Manifest], str]:
    revision = ""
    try:
        with open_source(kw) as artifact:
            revision = artifact.revision
            return render_artifact(artifact, kw), revision
    except (SourceError, ManifestError, OSError, ValueError) as e:
        at = f"{revision}: " if revision else ""
        raise _FailedError([f"{at}{e}; nothing was applied or pruned"]) from e


def _cluster(kw: dict[str, Any]) -> tuple[kube_client.Kube, discovery.RestMapper]:
    try:
        kube = connect_cluster(kw, pool_size=kw.get("concurrency") or 8)
        mapper = discovery.RestMapper(kube)
        mapper.refresh()
    except (kube_client.ConfigError, AwsError, kube_client.UnreachableError, kube_client.KubeError) as e:
        raise _FailedError([f"{e}; nothing was applied or pruned"]) from e
    return kube, mapper


def _prepare(command: str, kw: dict[str, Any]) -> tuple[kube_client.Kube, discovery.RestMapper, list[Manifest], str]:
    try:
        manifests, revision = _collect(kw)
        kube, mapper = _cluster(kw)
    except _FailedError as e:
        fail(command, e.errors)
    return kube, mapper, manifests, revision


def _options(kw: dict[str, Any], **extra: Any) -> engine.Options:
    name = default_name(kw)
    check_name(kw["namespace"], name)
    policies = None
    if kw.get("policies"):
        try:  # loaded for every sync: edited policy files take effect at once (also with --watch)
            policies = policy.load_policies(kw["policies"])
        except policy.PolicyError as e:
            raise _FailedError([f"{e}; the sync refuses to proceed"]) from e
    return engine.Options(
        name=name,
        policies=policies,
        policy_mode=kw.get("policy_mode") or "enforce",
        namespace=kw["namespace"],
        default_namespace=kw["default_namespace"],
        **extra,
    )


def _print_diff(p: Plan, secrets: frozenset[str]) -> None:
    for item in sorted(p.items, key=lambda i: (i.stage, i.oid)):
        if item.action in (Action.UNCHANGED,):
            continue
        why = f" ({item.reason})" if item.reason else ""
        click.echo(f"{item.action.value} {item.oid}{why}")
        for line in item.diff:
            click.echo(f"    {redact.scrub(line, secrets)}")  # diffs are masked already; belt and braces


@cli.command()
@source_options
@render_options
@cluster_options
@policy_options
@click.option(
    "--output",
    "-o",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one document with each change and its RFC 6902 patch (live -> git).",
)
def diff(output: str, **kw: Any) -> None:
    """Show what a sync would change, without changing anything.

    Exit 0: no changes; 1: changes; 2: error.
    """
    kube, mapper, manifests, revision = _prepare("diff", kw)
    secrets = redact.secret_values(manifests)
    try:
        opts = _options(kw, dry_run=True, guard=pruning.Guard(allow_mass_prune=True))
    except _FailedError as e:
        fail("diff", e.errors)
    try:
        res = engine.run(kube, mapper, manifests, revision, opts)
    except (InventoryError, kube_client.UnreachableError, kube_client.KubeError) as e:
        fail("diff", [redact.scrub(str(e), secrets)])
    _print_violations(res, secrets)
    if res.errors:
        fail("diff", [redact.scrub(e, secrets) for e in res.errors])
    assert res.plan is not None
    if output == "json":
        changes = [
            {
                "action": i.action.value,
                "object": {"group": i.oid.group, "kind": i.oid.kind, "namespace": i.oid.namespace, "name": i.oid.name},
                "source": i.source,
                "reason": i.reason,
                "diff": [redact.scrub(line, secrets) for line in i.diff],
                "patch": json.loads(redact.scrub(json.dumps(i.patch), secrets)),
            }
            for i in sorted(res.plan.items, key=lambda i: (i.stage, i.oid))
            if i.action is not Action.UNCHANGED
        ]
        click.echo(json.dumps({"revision": revision, "counts": res.plan.counts(), "changes": changes}, indent=2))
    else:
        _print_diff(res.plan, secrets)
    counts = res.plan.counts()
    click.echo(f"{revision}: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n), err=True)
    sys.exit(EXIT_CHANGES if res.plan.has_changes else EXIT_OK)


@cli.command()
@source_options
@render_options
@cluster_options
@policy_options
@click.option("--prune/--no-prune", default=True, show_default=True, help="Delete objects git no longer has.")
@click.option("--wait", is_flag=True, help="Wait until applied objects are healthy.")
@click.option(
    "--timeout", type=Duration(), default="5m", show_default=True, help="Limit for apply waits and --wait (10s, 5m...)."
)
@click.option("--dry-run", is_flag=True, help="Plan and validate on the server, change nothing.")
@click.option("--allow-mass-prune", is_flag=True, help="Allow pruning everything or more than --max-prune-ratio.")
@click.option(
    "--max-prune-ratio",
    type=float,
    default=0.5,
    show_default=True,
    help="Largest share of the inventory one sync may prune.",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel API requests.")
@click.option("--watch", is_flag=True, help="With --dir: sync again within a second of every file change.")
def sync(**kw: Any) -> None:
    """Sync a folder or repository into the cluster once, then exit.

    Prints one line per object (operation, kind, namespace, name, result).
    Exit 0: synced; 2: error (nothing is pruned after any error).
    With --watch (and --dir): sync again whenever a file changes, until interrupted.
    """
    if kw["watch"]:
        if not kw["directory"]:
            raise click.UsageError("--watch needs --dir")
        try:
            kube, mapper = _cluster(kw)
        except _FailedError as e:
            fail("sync", e.errors)
        local_watch.run(kw["directory"], lambda: _sync_once(kw, kube, mapper, quiet=True))
        return
    try:
        kube, mapper = _cluster(kw)
    except _FailedError as e:
        fail("sync", e.errors)
    sys.exit(_sync_once(kw, kube, mapper))


def _sync_once(kw: dict[str, Any], kube: kube_client.Kube, mapper: discovery.RestMapper, quiet: bool = False) -> int:
    """One sync; prints the table (or, with ``quiet``, only what changed) and returns the exit code."""
    t0 = time.monotonic()
    try:
        manifests, revision = _collect(kw)
    except _FailedError as e:
        for err in e.errors:
            click.echo(f"reconciler sync: error: {err}", err=True)
        return EXIT_ERROR
    secrets = redact.secret_values(manifests)
    try:
        opts = _options(
            kw,
            prune=kw["prune"],
            wait=kw["wait"],
            timeout=kw["timeout"],
            dry_run=kw["dry_run"],
            concurrency=kw["concurrency"],
            guard=pruning.Guard(allow_mass_prune=kw["allow_mass_prune"], max_ratio=kw["max_prune_ratio"]),
        )
    except _FailedError as e:
        for err in e.errors:
            click.echo(f"reconciler sync: error: {err}", err=True)
        return EXIT_ERROR
    with _progress(0 if quiet else len(manifests)) as progress:
        try:
            res = engine.run(kube, mapper, manifests, revision, opts, progress)
        except (InventoryError, kube_client.UnreachableError, kube_client.KubeError) as e:
            click.echo(f"reconciler sync: error: {redact.scrub(str(e), secrets)}", err=True)
            return EXIT_ERROR
    if res.plan is not None:
        _print_table(res, only_changes=quiet)
    _print_violations(res, secrets)
    if res.errors:
        stage = {"plan": "planning", "preflight": "validation", "guard": "the prune guard", "policy": "policy"}.get(
            res.stage, res.stage
        )
        tail = "; nothing was applied or pruned" if res.stage in ("policy", "plan", "preflight", "guard") else ""
        for i, err in enumerate(res.errors):
            msg = redact.scrub(err, secrets) + (tail if i == len(res.errors) - 1 else "")
            click.echo(f"reconciler sync: error: {msg}", err=True)
        click.echo(f"reconciler sync: error: sync stopped at {stage}", err=True)
        return EXIT_ERROR
    assert res.plan is not None
    counts = res.plan.counts()
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    took = f" ({time.monotonic() - t0:.2f}s)" if quiet else ""
    click.echo(f"{'dry run of ' if opts.dry_run else ''}{revision}: {summary}{took}")
    return EXIT_OK


def _print_violations(res: engine.Result, secrets: frozenset[str]) -> None:
    """Warn/Audit violations (and Deny ones in audit mode) are reported without stopping the sync."""
    if res.stage == "policy" and res.errors:
        return  # the Deny violations are the errors
    for v in res.violations:
        click.echo(f"reconciler: policy warning: {redact.scrub(policy.describe(v), secrets)}", err=True)


def _result_of(item: Item, res: engine.Result) -> str:
    if res.applied:
        for o in res.applied.outcomes:
            if o.item is item:
                return "failed" if o.error else o.result
    if res.pruned and item in res.pruned.deleted:
        return "pruned"
    if item.action is Action.SKIP:
        return f"skipped ({item.reason})"
    return "planned" if res.stage == "done" else "not run"


def _print_table(res: engine.Result, only_changes: bool = False) -> None:
    assert res.plan is not None
    rows = [
        (i.action.value, i.oid.kind, i.oid.namespace or "-", i.oid.name, _result_of(i, res))
        for i in sorted(res.plan.items, key=lambda i: (i.stage, i.oid))
        if not only_changes or i.action is not Action.UNCHANGED
    ]
    if rows:
        click.echo(table.aligned(("OPERATION", "KIND", "NAMESPACE", "NAME", "RESULT"), rows), nl=False)


@contextlib.contextmanager
def _progress(total: int) -> Iterator[engine.Progress]:
    """A progress bar on stderr when it is a terminal; silent otherwise (CI logs stay clean)."""
    if total == 0 or not sys.stderr.isatty():
        yield engine.Progress()
        return
    with click.progressbar(length=total, label="syncing", file=sys.stderr) as bar:

        def applied(o: ObjectResult) -> None:
            bar.update(1)

        yield engine.Progress(applied=applied)
