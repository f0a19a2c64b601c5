"""``reconciler run``: the controller in a process (flags become controller and tenancy options)."""

from __future__ import annotations

import logging
import os
import platform
import signal
from pathlib import Path
from typing import Any

import click

from reconciler.aws import ekscheck
from reconciler.aws.errors import AwsError
from reconciler.cli.app import cli
from reconciler.cli.common import (
    DEFAULT_CACHE,
    Duration,
    allow_pattern,
    connect_cluster,
    connection_options,
    duration_option,
    fail,
    grants,
    names,
    parse_pairs,
    service_account,
)
from reconciler.gitsync import handles, loop, spec, tenancy
from reconciler.kube import client as kube_client
from reconciler.policy import PolicyMode
from reconciler.report import logs


@cli.command()
@connection_options
@click.option("--watch-namespace", default=None, help="Only reconcile GitSyncs of this namespace [default: all].")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="GitSyncs reconciled at once."
)
@click.option(
    "--kube-api-qps",
    type=click.FloatRange(0),
    default=250.0,
    show_default=True,
    help="Requests a second to the API server, on average (0: no client-side limit).",
)
@click.option(
    "--kube-api-burst",
    type=click.IntRange(1),
    default=500,
    show_default=True,
    help="Requests to the API server at once above --kube-api-qps.",
)
@click.option(
    "--max-concurrent-per-namespace",
    type=click.IntRange(0, 64),
    default=0,
    help="GitSyncs of one namespace reconciled at once, so one tenant cannot hold every worker "
    "[default: half of --workers, at least 1; all of them with --watch-namespace].",
)
@click.option(
    "--max-prune-ratio",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Largest share of its inventory one sync may prune; more needs the GitSync's allow-mass-prune annotation.",
)
@click.option(
    "--max-timeout",
    type=str,
    default="1h",
    show_default=True,
    callback=lambda ctx, param, value: duration_option(value, "--max-timeout"),
    help="Largest spec.timeout a GitSync may ask for; one above it is refused (Stalled).",
)
@click.option("--metrics-addr", default=":8080", show_default=True, help="Prometheus /metrics ('' to disable).")
@click.option("--health-addr", default=":8081", show_default=True, help="/healthz and /readyz ('' to disable).")
@click.option(
    "--policies",
    "policies_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Policy files (e.g. a mounted ConfigMap); reloaded when they change. Default: no policy gate.",
)
@click.option(
    "--alertmanager-url",
    default="",
    envvar="RECONCILER_ALERTMANAGER_URL",
    help="Post drift and failure alerts to this Alertmanager (v2 API), e.g. http://alertmanager:9093.",
)
@click.option("--webhook-addr", default="", help="Push webhook receiver, e.g. :9292 ('' = off).")
@click.option(
    "--webhook-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="RECONCILER_WEBHOOK_SECRET_FILE",
    help="File holding the shared webhook secret (required with --webhook-addr).",
)
@click.option(
    "--leader-elect/--no-leader-elect", default=False, show_default=True, help="Run as one of several replicas."
)
@click.option(
    "--shards",
    type=click.IntRange(0, 1024),
    default=0,
    show_default=True,
    help="Split GitSyncs into this many shards, each owned through a Lease in --lease-namespace; every "
    "replica reconciles its fair share (0: off). Not with --leader-elect.",
)
@click.option(
    "--lease-namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "reconciler-system"),
    show_default="$POD_NAMESPACE or reconciler-system",
    help="Namespace of the leader-election Lease (and of the shard Leases).",
)
@click.option(
    "--lease-duration",
    type=Duration(minimum=1),
    default="15s",
    show_default=True,
    help="How long before a standby takes over (10s, 1m...).",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    show_default=True,
    help="Git checkouts, per GitSync.",
)
@click.option(
    "--eks-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Check the EKS cluster against this eksctl ClusterConfig every --eks-interval (docs/eks.md).",
)
@click.option(
    "--eks-substitute", "eks_substitute", multiple=True, metavar="NAME=VALUE", help="${NAME} in --eks-config."
)
@click.option(
    "--eks-var", "eks_vars", multiple=True, metavar="NAME=VALUE", hidden=True, help="Deprecated: --eks-substitute."
)
@click.option(
    "--eks-interval",
    type=Duration(minimum=ekscheck.MIN_POLL_INTERVAL),
    default="10m",
    show_default=True,
    help="Time between EKS checks (30s, 10m, 1h...).",
)
@click.option(
    "--eks-drift",
    type=click.Choice([m.value for m in ekscheck.EksDriftMode]),
    default=ekscheck.EksDriftMode.WARN.value,
    show_default=True,
    help="correct: also send the in-place updates `reconciler eks sync` would.",
)
@click.option("--eks-region", default=None, help="AWS region [default: the ClusterConfig's metadata.region].")
@click.option(
    "--allow-eks-target",
    "allow_eks_targets",
    multiple=True,
    metavar="[NAMESPACE=]CLUSTER/REGION",
    callback=lambda ctx, param, values: tuple(allow_pattern(v) for v in values),
    help="An EKS cluster GitSyncs of NAMESPACE (a glob) may name in spec.target (repeatable; globs: "
    "team-a=*/eu-west-1, *=prod-*/*). Without NAMESPACE=: GitSyncs of --platform-namespace namespaces, "
    "or of every namespace when none is listed. Default: none, since a target is reached with the "
    "controller's own AWS identity.",
)
@click.option(
    "--default-service-account",
    metavar="NAME",
    callback=names("--default-service-account", spec.object_name),
    help="A GitSync without spec.serviceAccountName acts as ServiceAccount NAME of its own namespace "
    "(outside --platform-namespace). Default: the controller's own identity.",
)
@click.option(
    "--platform-namespace",
    "platform_namespaces",
    multiple=True,
    metavar="NS",
    callback=names("--platform-namespace", spec.namespace_name),
    help="A namespace whose GitSyncs without serviceAccountName act as --platform-service-account (repeatable).",
)
@click.option(
    "--platform-service-account",
    metavar="NS/NAME",
    callback=service_account,
    help="The ServiceAccount platform GitSyncs without serviceAccountName act as (bound to the broad apply role).",
)
@click.option(
    "--no-cross-namespace-refs",
    is_flag=True,
    help="Refuse a GitSync that refers to another namespace (spec.dependsOn): Stalled, AccessDenied.",
)
@click.option(
    "--min-policy-mode",
    type=click.Choice([m.value for m in PolicyMode]),
    default=PolicyMode.OFF.value,
    show_default=True,
    help="A GitSync's weaker spec.policy.mode is raised to this.",
)
@click.option(
    "--allow-bucket",
    "allow_buckets",
    multiple=True,
    metavar="NAMESPACE=BUCKET",
    callback=grants("--allow-bucket"),
    help="A bucket GitSyncs of NAMESPACE may read without a secretRef, i.e. with the controller's own AWS "
    "identity (repeatable; globs in both parts). Default: none.",
)
@click.option(
    "--allow-bucket-endpoint",
    "allow_bucket_endpoints",
    multiple=True,
    metavar="NAMESPACE=URL-PREFIX",
    callback=grants("--allow-bucket-endpoint"),
    help="An S3 endpoint URL prefix GitSyncs of NAMESPACE (a glob) may name in spec.source.bucket.endpoint "
    "(repeatable). Default: none, only AWS's own endpoints.",
)
@click.option(
    "--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True
)
def run(**kw: Any) -> None:
    """Run the controller: reconcile every GitSync object in the cluster.

    With --eks-cluster the controller runs outside the cluster it manages (GitSyncs, status,
    Events and the leader Lease all live there).  Logs are JSON lines on stdout; a failed sync
    is exactly one ERROR line.
    """
    logs.setup(kw["log_level"])
    if kw["shards"] and kw["leader_elect"]:
        fail("run", ["--shards and --leader-elect exclude each other: with shards every replica reconciles"])
    secret = _webhook_secret(kw)
    eks_opts = _eks_options(kw)
    try:
        kube = connect_cluster(kw, pool_size=handles.pool_size(kw["workers"]))
    except (kube_client.ConfigError, AwsError) as e:
        fail("run", [str(e)])
    ctl = loop.Controller(
        kube,
        _controller_options(kw, webhook_secret=secret, eks=eks_opts),
        client_factory=handles.client_factory(lambda headers: connect_cluster(kw, headers=headers)),
    )

    def _stop(signum: int, frame: object) -> None:
        ctl.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ctl.run()


def _webhook_secret(kw: dict[str, Any]) -> bytes:
    """The shared secret of --webhook-addr; turns the webhook off (``kw["webhook_addr"] = ""``) while
    its file does not exist yet: the Secret volume is optional (install first, webhooks later)."""
    if not kw["webhook_addr"]:
        return b""
    if not kw["webhook_secret_file"]:
        fail("run", ["--webhook-addr needs --webhook-secret-file: unsigned webhooks are never accepted"])
    if not kw["webhook_secret_file"].exists():
        logging.getLogger("reconciler").warning(
            f"{kw['webhook_secret_file']} does not exist: webhooks are off until it does (restart to enable)"
        )
        kw["webhook_addr"] = ""
        return b""
    secret: bytes = kw["webhook_secret_file"].read_bytes().strip()
    if len(secret) < 16:
        fail("run", [f"{kw['webhook_secret_file']}: the webhook secret must be at least 16 bytes"])
    return secret


def _eks_options(kw: dict[str, Any]) -> ekscheck.EksOptions | None:
    """--eks-config and its flags; ``--eks-var``, the old name of --eks-substitute, still works (and warns once)."""
    if kw["eks_vars"]:
        click.echo("reconciler run: warning: --eks-var is deprecated; use --eks-substitute", err=True)
    if not kw["eks_config"]:
        return None
    try:
        variables = parse_pairs(kw["eks_vars"], "--eks-var") | parse_pairs(kw["eks_substitute"], "--eks-substitute")
    except click.BadParameter as e:
        fail("run", [e.format_message()])  # names the flag: there are two
    return ekscheck.EksOptions(
        kw["eks_config"],
        variables,
        interval=kw["eks_interval"],
        mode=ekscheck.EksDriftMode(kw["eks_drift"]),
        region=kw["eks_region"],
    )


def _tenancy(kw: dict[str, Any]) -> tenancy.Tenancy:
    """The lock-down flags (docs/security.md)."""
    return tenancy.Tenancy(
        default_service_account=kw["default_service_account"],
        platform_namespaces=frozenset(kw["platform_namespaces"]),
        platform_service_account=kw["platform_service_account"],
        no_cross_namespace_refs=kw["no_cross_namespace_refs"],
        min_policy_mode=PolicyMode(kw["min_policy_mode"]),
        eks_targets=tuple(tenancy.parse_grant(v, "--allow-eks-target", legacy=True) for v in kw["allow_eks_targets"]),
        buckets=kw["allow_buckets"],
        bucket_endpoints=kw["allow_bucket_endpoints"],
        local_git=False,  # the controller's disk holds every tenant's cache: file:// is the CLI's only
    )


def _controller_options(
    kw: dict[str, Any], *, webhook_secret: bytes, eks: ekscheck.EksOptions | None
) -> loop.ControllerOptions:
    return loop.ControllerOptions(
        namespace=kw["watch_namespace"],
        workers=kw["workers"],
        kube_api_qps=kw["kube_api_qps"],
        kube_api_burst=kw["kube_api_burst"],
        cache_dir=kw["cache_dir"],
        leader_elect=kw["leader_elect"],
        lease_namespace=kw["lease_namespace"],
        shards=kw["shards"],
        lease_duration=kw["lease_duration"],
        identity=os.environ.get("POD_NAME") or f"{platform.node()}-{os.getpid()}",
        metrics_addr=kw["metrics_addr"],
        health_addr=kw["health_addr"],
        webhook_addr=kw["webhook_addr"],
        webhook_secret=webhook_secret,
        alertmanager_url=kw["alertmanager_url"],
        policies_dir=kw["policies_dir"],
        eks=eks,
        max_concurrent_per_namespace=kw["max_concurrent_per_namespace"],
        max_timeout=kw["max_timeout"],
        max_prune_ratio=kw["max_prune_ratio"],
        tenancy=_tenancy(kw),
    )
