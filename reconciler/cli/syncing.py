"""``reconciler render``, ``diff`` and ``sync``: one revision checked or synced from the command line."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler import policy
from reconciler.aws.errors import AwsError
from reconciler.cli import charts, decrypting
from reconciler.cli.app import cli
from reconciler.cli.charts import chart_options
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
    policy_options,
    render_artifact,
    render_options,
    source_options,
)
from reconciler.cli.decrypting import decrypt_options, decryption
from reconciler.cli.flagsteps import FlagSteps
from reconciler.gitsync.cluster import KubeCluster
from reconciler.gitsync.errors import (
    PolicyFailedError,
    PolicyViolationError,
    RenderFailedError,
    SourceFailedError,
    StepError,
)
from reconciler.gitsync.pipeline import sync_revision
from reconciler.gitsync.results import Progress, Stage, SyncOptions, SyncResult
from reconciler.kube import client as kube_client
from reconciler.kube import discovery
from reconciler.policy import checking
from reconciler.render.manifests import ManifestError
from reconciler.report import redact, table
from reconciler.source import local_watch
from reconciler.source.artifact import Artifact, SourceError
from reconciler.sync import prune as pruning
from reconciler.sync.apply import ObjectResult
from reconciler.sync.changeset import Action
from reconciler.sync.plan import Item, Plan


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@render_options
@decrypt_options
@click.option("--show-secrets", is_flag=True, help="With --decrypt: print decrypted values instead of ***.")
@chart_options
def render(path: Path, show_secrets: bool, **kw: Any) -> None:
    """Print the objects PATH renders to (YAML stream), offline; with --chart, the chart's
    (a chart path is relative to PATH's repository root, as in a GitSync)."""
    try:
        kw["decryption"] = decryption(kw)
        root, sub = checking.checkout_root(path)
        artifact = Artifact(revision="", path=root)
        spec = charts.helm_spec(kw)
        if spec is None:
            objs = render_artifact(artifact, {**kw, "subpath": sub})
        else:
            namespace = kw["target_namespace"] or "default"
            objs = charts.everything(charts.render_chart(artifact, spec, namespace=namespace, cache_dir=None))
    except (ManifestError, SourceError, click.BadParameter) as e:
        fail("render", [str(e)])
    shown = decrypting.for_display(objs, show_secrets=show_secrets)
    text = yaml.safe_dump_all(shown, sort_keys=False, explicit_start=True)
    if not show_secrets:
        text = redact.scrub(text, decrypting.decrypted_values(objs))
    click.echo(text, nl=False)


Handles = tuple[kube_client.Kube, discovery.RestMapper]  # the cluster the connection flags name

# How ``sync`` names the stage it stopped at ("sync stopped at ...").
_STOPPED_AT = {Stage.PLAN: "planning", Stage.PREFLIGHT: "validation", Stage.GUARD: "the prune guard"}
# Stages whose failure leaves the cluster untouched, as the last error line says.
_NOTHING_WRITTEN = frozenset({Stage.POLICY, Stage.PLAN, Stage.PREFLIGHT, Stage.GUARD})


def _cluster(command: str, kw: dict[str, Any]) -> Handles:
    """The cluster the connection flags name, or the command ends with one error line."""
    try:
        kube = connect_cluster(kw, pool_size=kw.get("concurrency") or 8)
        mapper = discovery.RestMapper(kube)
        mapper.refresh()
    except (kube_client.ConfigError, AwsError, kube_client.UnreachableError, kube_client.KubeError) as e:
        fail(command, [f"{e}; nothing was applied or pruned"])
    return kube, mapper


def _options(kw: dict[str, Any], **extra: Any) -> SyncOptions:
    name = default_name(kw)
    check_name(kw["namespace"], name)
    return SyncOptions(
        name=name,
        policy_mode=kw.get("policy_mode") or "enforce",
        namespace=kw["namespace"],
        # a chart's objects rarely name a namespace: they go into the release namespace, as with Helm
        default_namespace=(kw.get("chart") and kw["target_namespace"]) or kw["default_namespace"],
        **extra,
    )


def _run(cluster: Handles, *, options: SyncOptions, steps: FlagSteps, progress: Progress | None = None) -> SyncResult:
    """The pipeline, with the CLI's steps, into the cluster the flags name."""
    kube, mapper = cluster
    return sync_revision(steps=steps, cluster=KubeCluster(kube, mapper, options), options=options, progress=progress)


def _error_lines(e: StepError, steps: FlagSteps, *, stopped: bool) -> list[str]:
    """What the command line says about a failed step (``stopped``: sync's tail and closing line)."""
    if isinstance(e, SourceFailedError | RenderFailedError):
        at = f"{steps.revision}: " if steps.revision else ""
        return [f"{at}{e.errors[0]}; nothing was applied or pruned"]
    if isinstance(e, PolicyFailedError):
        return [f"{e.errors[0]}; the sync refuses to proceed"]
    lines = [redact.scrub(err, steps.secrets) for err in e.errors]
    if e.result is None or not stopped:
        return lines
    if e.result.stage in _NOTHING_WRITTEN:
        lines[-1] += "; nothing was applied or pruned"
    stage = e.result.stage
    return [*lines, f"sync stopped at {_STOPPED_AT.get(stage, stage.value)}"]


def _revision(res: SyncResult) -> str:
    """The revision as the closing line names it: with a chart, the chart too."""
    return f"{res.revision} (chart {res.chart})" if res.chart else res.revision


def _print_diff(p: Plan, secrets: frozenset[str]) -> None:
    for item in sorted(p.items, key=lambda i: (i.stage, i.oid)):
        if item.action in (Action.UNCHANGED,):
            continue
        why = f" ({item.reason})" if item.reason else ""
        click.echo(f"{item.action.value} {item.oid}{why}")
        for line in item.diff:
            click.echo(f"    {redact.scrub(line, secrets)}")  # diffs are masked already; belt and braces


def _print_json(res: SyncResult, secrets: frozenset[str]) -> None:
    assert res.plan is not None
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
    click.echo(json.dumps({"revision": res.revision, "counts": res.plan.counts(), "changes": changes}, indent=2))


@cli.command()
@source_options
@render_options
@decrypt_options
@chart_options
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
    kw["decryption"] = decryption(kw)
    cluster = _cluster("diff", kw)
    options = _options(kw, dry_run=True, guard=pruning.Guard(allow_mass_prune=True))
    with contextlib.ExitStack() as stack:
        steps = FlagSteps(kw, stack)
        try:
            res = _run(cluster, options=options, steps=steps)
        except StepError as e:
            if e.result is not None:
                _print_violations(e.result, steps.secrets, denied=isinstance(e, PolicyViolationError))
            fail("diff", _error_lines(e, steps, stopped=False))
    _print_violations(res, steps.secrets)
    assert res.plan is not None
    if output == "json":
        _print_json(res, steps.secrets)
    else:
        _print_diff(res.plan, steps.secrets)
    counts = res.plan.counts()
    click.echo(f"{_revision(res)}: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n), err=True)
    sys.exit(EXIT_CHANGES if res.plan.has_changes else EXIT_OK)


@cli.command()
@source_options
@render_options
@decrypt_options
@chart_options
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
    kw["decryption"] = decryption(kw)
    if kw["watch"]:
        if not kw["directory"]:
            raise click.UsageError("--watch needs --dir")
        cluster = _cluster("sync", kw)
        local_watch.run(kw["directory"], lambda: _sync_once(kw, cluster, quiet=True))
        return
    sys.exit(_sync_once(kw, _cluster("sync", kw)))


def _sync_once(kw: dict[str, Any], cluster: Handles, *, quiet: bool = False) -> int:
    """One sync; prints the table (or, with ``quiet``, only what changed) and returns the exit code."""
    t0 = time.monotonic()
    options = _options(
        kw,
        prune=kw["prune"],
        wait=kw["wait"],
        timeout=kw["timeout"],
        dry_run=kw["dry_run"],
        concurrency=kw["concurrency"],
        guard=pruning.Guard(allow_mass_prune=kw["allow_mass_prune"], max_ratio=kw["max_prune_ratio"]),
    )
    with contextlib.ExitStack() as stack:
        steps = FlagSteps(kw, stack)
        try:
            res = _run(cluster, options=options, steps=steps, progress=_progress(stack, quiet=quiet))
        except StepError as e:
            if e.result is not None:
                if e.result.plan is not None:
                    _print_table(e.result, only_changes=quiet)
                _print_violations(e.result, steps.secrets, denied=isinstance(e, PolicyViolationError))
            for line in _error_lines(e, steps, stopped=True):
                click.echo(f"reconciler sync: error: {line}", err=True)
            return EXIT_ERROR
    _print_table(res, only_changes=quiet)
    _print_violations(res, steps.secrets)
    assert res.plan is not None
    counts = res.plan.counts()
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    took = f" ({time.monotonic() - t0:.2f}s)" if quiet else ""
    click.echo(f"{'dry run of ' if options.dry_run else ''}{_revision(res)}: {summary}{took}")
    return EXIT_OK


def _print_violations(res: SyncResult, secrets: frozenset[str], *, denied: bool = False) -> None:
    """Warn/Audit violations (and Deny ones in audit mode) are reported without stopping the sync."""
    if denied:
        return  # the Deny violations are the errors
    for v in res.violations:
        click.echo(f"reconciler: policy warning: {redact.scrub(policy.describe(v), secrets)}", err=True)


def _result_of(item: Item, res: SyncResult) -> str:
    if res.applied:
        for o in res.applied.outcomes:
            if o.item is item:
                return "failed" if o.error else o.result
    if res.pruned and item in res.pruned.deleted:
        return "pruned"
    if item.action is Action.SKIP:
        return f"skipped ({item.reason})"
    return "planned" if res.stage is Stage.DONE else "not run"


def _print_table(res: SyncResult, *, only_changes: bool = False) -> None:
    assert res.plan is not None
    rows = [
        (i.action.value, i.oid.kind, i.oid.namespace or "-", i.oid.name, _result_of(i, res))
        for i in sorted(res.plan.items, key=lambda i: (i.stage, i.oid))
        if not only_changes or i.action is not Action.UNCHANGED
    ]
    if rows:
        click.echo(table.aligned(("OPERATION", "KIND", "NAMESPACE", "NAME", "RESULT"), rows), nl=False)


def _progress(stack: contextlib.ExitStack, *, quiet: bool) -> Progress:
    """A progress bar on stderr, once the plan is known, when it is a terminal; silent otherwise (CI logs)."""
    if quiet or not sys.stderr.isatty():
        return Progress()
    bars: list[Any] = []

    def planned(p: Plan) -> None:
        total = sum(1 for i in p.items if i.desired is not None)
        if total:
            bars.append(stack.enter_context(click.progressbar(length=total, label="syncing", file=sys.stderr)))

    def applied(o: ObjectResult) -> None:
        for bar in bars:
            bar.update(1)

    return Progress(planned=planned, applied=applied)
