"""The ``reconciler`` command line.

Exit codes follow ``kubectl diff`` and ``flux diff``: 0 ok / no change, 1 changes or
violations found, 2 error (including "not implemented yet" for commands still to land),
so scripts and CI can tell "something to do" from "something broke".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import platform
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from click.core import ParameterSource

import reconciler
from reconciler import controller, ekscheck, policy, spec, tenancy
from reconciler.aws import clusterconfig, eks, eksreport, eksupdate
from reconciler.aws import target as eks_target
from reconciler.aws.errors import AwsError
from reconciler.kube import client as kube_client
from reconciler.kube import discovery
from reconciler.policy import checking
from reconciler.render import build as render_build
from reconciler.render import document
from reconciler.render.manifests import Manifest, ManifestError
from reconciler.report import durations, logs, table
from reconciler.source import bucket as bucket_source
from reconciler.source import git as git_source
from reconciler.source import local_watch
from reconciler.source.artifact import Artifact, Source, SourceError
from reconciler.source.local import LocalSource
from reconciler.sync import engine, redact
from reconciler.sync import prune as pruning
from reconciler.sync.apply import Outcome
from reconciler.sync.inventory import InventoryError
from reconciler.sync.plan import Action, Item, Plan

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gitops-reconciler" / "git"


def _fail(command: str, errors: list[str]) -> NoReturn:
    for e in errors:
        click.echo(f"reconciler {command}: error: {e}", err=True)
    sys.exit(EXIT_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(reconciler.__version__, "--version", prog_name="reconciler")
def cli() -> None:
    """gitops-reconciler: pull-based GitOps for Kubernetes.

    Fetches a git repository (or S3 bucket, or folder), renders its manifests, checks
    them against policies, applies them with server-side apply, prunes what git no
    longer has, and reports every sync as conditions, Events, metrics and logs.
    """


# --------------------------------------------------------------------------- shared options


def _parse_pairs(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise click.BadParameter(f"expected NAME=VALUE, got {p!r}", param_hint=flag)
        out[key] = value
    return out


class Duration(click.ParamType[float]):
    """A flag in seconds that reads ``10s``, ``5m``, ``1h30m``, ``250ms`` or a bare number, as
    every Kubernetes and Flux tool (and our GitSync spec) does."""

    name = "duration"

    def __init__(self, *, minimum: float | None = None) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            try:
                seconds = durations.parse(str(value))
            except durations.DurationError as e:
                self.fail(str(e), param, ctx)
        if self.minimum is not None and seconds < self.minimum:
            self.fail(f"{value!r} is less than the minimum of {durations.to_text(self.minimum)}", param, ctx)
        return seconds


def _allow_pattern(text: str) -> str:
    """One ``--allow-eks-target`` value (``[NAMESPACE=]CLUSTER/REGION``), refused at start rather
    than silently never matching."""
    try:
        spec.allow_pattern(tenancy.parse_grant(text, "--allow-eks-target", legacy=True).value)
    except spec.SpecError as e:
        raise click.BadParameter(str(e), param_hint="--allow-eks-target") from e
    return text


def _grants(flag: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple[tenancy.Grant, ...]]:
    """A click callback for a repeatable ``NAMESPACE=VALUE`` allow-list flag."""

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tenancy.Grant, ...]:
        try:
            return tuple(tenancy.parse_grant(v, flag) for v in values)
        except spec.SpecError as e:
            raise click.BadParameter(str(e), param_hint=flag) from e

    return parse


def _service_account(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    try:
        return tenancy.parse_service_account(value, "--platform-service-account")
    except spec.SpecError as e:
        raise click.BadParameter(str(e), param_hint="--platform-service-account") from e


def _names(flag: str, check: Callable[[Any, str], str]) -> Callable[..., Any]:
    def parse(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            if isinstance(value, tuple):
                return tuple(check(v, flag) for v in value)
            return None if value is None else check(value, flag)
        except spec.SpecError as e:
            raise click.BadParameter(str(e), param_hint=flag) from e

    return parse


def _duration_option(text: str, name: str) -> float:
    """A Go-style duration flag (``30m``, ``1h``), refused at start when it is not one."""
    try:
        seconds = spec.parse_duration(text, "x")
    except spec.SpecError:
        raise click.BadParameter(f"{text!r} is not a duration like 30m or 1h", param_hint=name) from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s", param_hint=name)
    return seconds


def _substitution(kw: dict[str, Any]) -> dict[str, str] | None:
    """The variables, or None when neither flag was given: then ``${...}`` is applied verbatim,
    as a GitSync without ``substitute``/``substituteFrom`` (Flux's "no postBuild")."""
    if not kw["substitute"] and not kw["substitute_from"]:
        return None
    values: dict[str, str] = {}
    for file in kw["substitute_from"]:
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise click.BadParameter(f"{file}: cannot read it as text: {e}", param_hint="--substitute-from") from e
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        values.update(_parse_pairs(tuple(lines), f"--substitute-from {file}"))
    values.update(_parse_pairs(kw["substitute"], "--substitute"))  # inline values win, as in a GitSync
    return values


def render_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--substitute-from",
        "substitute_from",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        metavar="FILE",
        help="File of NAME=VALUE lines for ${NAME} (repeatable); turns substitution on.",
    )(f)
    f = click.option(
        "--substitute",
        "substitute",
        multiple=True,
        metavar="NAME=VALUE",
        help="Value for ${NAME} (repeatable); turns substitution on. Without it or --substitute-from, "
        "${...} is applied verbatim.",
    )(f)
    return click.option("--target-namespace", default=None, help="Namespace for every namespaced object.")(f)


def source_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help="A local folder."),
        click.option("--repo", help="Git URL: file://, ssh://, user@host:path or https://."),
        click.option("--bucket", default=None, help="S3 bucket (credentials: the AWS environment, e.g. AWS_PROFILE)."),
        click.option("--prefix", default="", help="With --bucket: only keys starting with this."),
        click.option(
            "--bucket-region", default=None, help="With --bucket: its AWS region [default: the environment's]."
        ),
        click.option("--endpoint", default=None, help="With --bucket: an S3-compatible endpoint URL (MinIO, ...)."),
        click.option(
            "--ref",
            default=None,
            help="Branch NAME (or branch:NAME), tag:NAME, semver:RANGE or commit:SHA; default: the remote's HEAD.",
        ),
        click.option("--path", "subpath", default=".", show_default=True, help="Folder inside the source to sync."),
        click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), help="SSH deploy key file."),
        click.option(
            "--known-hosts",
            type=click.Path(dir_okay=False, path_type=Path),
            help="known_hosts file (required for SSH).",
        ),
        click.option("--username", default=None, help="HTTPS basic-auth user."),
        click.option(
            "--password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File holding the HTTPS password or token (never on the command line).",
        ),
        click.option("--ca-file", type=click.Path(dir_okay=False, path_type=Path), help="CA bundle for HTTPS."),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_CACHE,
            show_default=True,
            help="Where git checkouts and bucket objects are cached between runs.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def policy_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--policies",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Gate the revision with these ValidatingAdmissionPolicies (see `reconciler check`).",
    )(f)
    return click.option(
        "--policy-mode",
        type=click.Choice(["enforce", "audit", "off"]),
        default="enforce",
        show_default=True,
        help="enforce: a Deny violation applies and prunes nothing; audit: report and go on.",
    )(f)


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--kubeconfig/--context, or --eks-cluster/--region: how to reach the cluster."""

    @functools.wraps(f)
    def checked(*args: Any, **kw: Any) -> Any:
        _check_connection_flags(kw)
        return f(*args, **kw)

    opts = [
        click.option(
            "--kubeconfig",
            type=click.Path(dir_okay=False),
            envvar="KUBECONFIG",
            help="Kubeconfig file [default: ~/.kube/config, or in-cluster in a Pod].",
        ),
        click.option("--context", "context", default=None, help="Kubeconfig context to use."),
        click.option(
            "--eks-cluster",
            metavar="NAME",
            default=None,
            help="Reach this EKS cluster with AWS credentials instead of a kubeconfig "
            "(eks:DescribeCluster, and an IAM bearer token renewed before it expires).",
        ),
        click.option(
            "--region", default=None, help="AWS region of --eks-cluster [default: AWS_REGION or the AWS profile's]."
        ),
    ]
    for o in reversed(opts):
        checked = o(checked)
    return checked


def _check_connection_flags(kw: dict[str, Any]) -> None:
    """A kubeconfig and an EKS cluster name are two answers to one question: refuse both at once.

    Only flags given on the command line count: a KUBECONFIG in the environment (set by many
    shells) must not forbid --eks-cluster.
    """
    if kw.get("eks_cluster"):
        ctx = click.get_current_context()
        given = [
            f"--{p}" for p in ("kubeconfig", "context") if ctx.get_parameter_source(p) is ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(f"--eks-cluster cannot be combined with {' and '.join(given)}: choose one cluster")
    elif kw.get("region"):
        raise click.UsageError("--region is the region of --eks-cluster: give --eks-cluster NAME too")


def connect_cluster(
    kw: dict[str, Any], *, pool_size: int = 8, headers: dict[str, str] | None = None
) -> kube_client.Kube:
    """The handle the connection flags ask for; raises ConfigError or AwsError."""
    if kw.get("eks_cluster"):
        return eks_target.connect(kw["eks_cluster"], kw["region"], pool_size=pool_size, headers=headers)
    return kube_client.connect(kw["kubeconfig"], kw["context"], pool_size=pool_size, headers=headers)


def cluster_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = connection_options(f)
    f = click.option(
        "--name", default=None, help="Name of the sync whose inventory is kept [default: from the source]."
    )(f)
    f = click.option(
        "--namespace",
        "-n",
        default="default",
        show_default=True,
        help="Namespace of the sync (its inventory lives here).",
    )(f)
    return click.option(
        "--default-namespace",
        default="default",
        show_default=True,
        help="Namespace for namespaced objects without one.",
    )(f)


def parse_ref(ref: str | None) -> git_source.GitRef:
    if not ref:
        return git_source.GitRef()
    kind, sep, value = ref.partition(":")
    if sep and kind in ("branch", "tag", "semver", "commit"):
        return git_source.GitRef.from_spec({kind: value})
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return git_source.GitRef(commit=ref)
    return git_source.GitRef(branch=ref)


@contextlib.contextmanager
def open_source(kw: dict[str, Any]) -> Iterator[Artifact]:
    """Fetch the revision named by the source flags; the source is closed afterwards."""
    directory, repo, bucket = kw["directory"], kw["repo"], kw["bucket"]
    if sum(map(bool, (directory, repo, bucket))) != 1:
        raise click.UsageError("give exactly one of --dir, --repo or --bucket")
    src: Source
    if directory:
        src = LocalSource(directory)
    elif bucket:
        src = bucket_source.BucketSource(
            bucket, prefix=kw["prefix"], region=kw["bucket_region"], endpoint=kw["endpoint"], cache_dir=kw["cache_dir"]
        )
    else:
        src = git_source.GitSource(repo, _ref(kw), cache_dir=kw["cache_dir"], credentials=_git_credentials(kw))
    try:
        yield src.fetch()
    finally:
        src.close()


def _ref(kw: dict[str, Any]) -> git_source.GitRef:
    try:
        return parse_ref(kw["ref"])
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ref") from e


def _git_credentials(kw: dict[str, Any]) -> git_source.GitCredentials:
    return git_source.GitCredentials(
        ssh_private_key=kw["ssh_key"].read_bytes() if kw["ssh_key"] else None,
        known_hosts=kw["known_hosts"].read_bytes() if kw["known_hosts"] else None,
        username=kw["username"],
        password=kw["password_file"].read_text().strip() if kw["password_file"] else None,
        ca_bundle=kw["ca_file"].read_bytes() if kw["ca_file"] else None,
    )


def _render(artifact: Artifact, kw: dict[str, Any]) -> list[Manifest]:
    opts = render_build.RenderOptions(substitute=_substitution(kw), target_namespace=kw["target_namespace"])
    return render_build.render(artifact.path, kw.get("subpath") or ".", opts)


def _default_name(kw: dict[str, Any]) -> str:
    """``<repo or folder>-<path>-<hash>``: readable, and distinct for distinct sources.

    The hash of the full source and path keeps two repositories both called ``fleet``
    from sharing one inventory (and pruning each other's objects).
    """
    if kw.get("name"):
        return str(kw["name"])
    if kw.get("directory"):
        src = str(Path(kw["directory"]).resolve())
        base = Path(src).name
    else:
        src = (
            f"{kw.get('endpoint') or ''}s3://{kw['bucket']}/{kw.get('prefix') or ''}"
            if kw.get("bucket")
            else str(kw["repo"])
        )
        base = kw["bucket"] if kw.get("bucket") else src.rstrip("/").split("/")[-1]
    sub = Path(kw.get("subpath") or ".").name
    h = hashlib.sha256(f"{src}\0{kw.get('subpath') or '.'}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{base.removesuffix('.git')}-{sub}".lower()).strip("-")[:30].strip("-")
    return f"{stem}-{h}" if stem else f"sync-{h}"


def _check_name(namespace: str, name: str) -> None:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(f"{namespace}.{name}") > 63:
        raise click.BadParameter(
            f"{name!r}: must be a DNS label, and '<namespace>.<name>' (the owner label value) at most 63 characters",
            param_hint="--name",
        )


# --------------------------------------------------------------------------- commands


@cli.command()
@connection_options
@click.option("--watch-namespace", default=None, help="Only reconcile GitSyncs of this namespace [default: all].")
@click.option(
    "--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="GitSyncs reconciled at once."
)
@click.option(
    "--max-concurrent-per-namespace",
    type=click.IntRange(0, 64),
    default=0,
    help="GitSyncs of one namespace reconciled at once, so one tenant cannot hold every worker "
    "[default: half of --workers, at least 1; all of them with --watch-namespace].",
)
@click.option(
    "--max-timeout",
    type=str,
    default="1h",
    show_default=True,
    callback=lambda ctx, param, value: _duration_option(value, "--max-timeout"),
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
    "--lease-namespace",
    default=lambda: os.environ.get("POD_NAMESPACE", "reconciler-system"),
    show_default="$POD_NAMESPACE or reconciler-system",
    help="Namespace of the leader-election Lease.",
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
@click.option("--eks-var", "eks_vars", multiple=True, metavar="NAME=VALUE", help="${NAME} in --eks-config.")
@click.option(
    "--eks-interval",
    type=Duration(minimum=ekscheck.MIN_POLL_INTERVAL),
    default="10m",
    show_default=True,
    help="Time between EKS checks (30s, 10m, 1h...).",
)
@click.option(
    "--eks-drift",
    type=click.Choice(["warn", "correct"]),
    default="warn",
    show_default=True,
    help="correct: also send the in-place updates `reconciler eks sync` would.",
)
@click.option("--eks-region", default=None, help="AWS region [default: the ClusterConfig's metadata.region].")
@click.option(
    "--allow-eks-target",
    "allow_eks_targets",
    multiple=True,
    metavar="[NAMESPACE=]CLUSTER/REGION",
    callback=lambda ctx, param, values: tuple(_allow_pattern(v) for v in values),
    help="An EKS cluster GitSyncs of NAMESPACE (a glob) may name in spec.target (repeatable; globs: "
    "team-a=*/eu-west-1, *=prod-*/*). Without NAMESPACE=: GitSyncs of --platform-namespace namespaces, "
    "or of every namespace when none is listed. Default: none, since a target is reached with the "
    "controller's own AWS identity.",
)
@click.option(
    "--default-service-account",
    metavar="NAME",
    callback=_names("--default-service-account", spec.object_name),
    help="A GitSync without spec.serviceAccountName acts as ServiceAccount NAME of its own namespace "
    "(outside --platform-namespace). Default: the controller's own identity.",
)
@click.option(
    "--platform-namespace",
    "platform_namespaces",
    multiple=True,
    metavar="NS",
    callback=_names("--platform-namespace", spec.namespace_name),
    help="A namespace whose GitSyncs without serviceAccountName act as --platform-service-account (repeatable).",
)
@click.option(
    "--platform-service-account",
    metavar="NS/NAME",
    callback=_service_account,
    help="The ServiceAccount platform GitSyncs without serviceAccountName act as (bound to the broad apply role).",
)
@click.option(
    "--no-cross-namespace-refs",
    is_flag=True,
    help="Refuse a GitSync that refers to another namespace (spec.dependsOn): Stalled, AccessDenied.",
)
@click.option(
    "--min-policy-mode",
    type=click.Choice(["enforce", "audit", "off"]),
    default="off",
    show_default=True,
    help="A GitSync's weaker spec.policy.mode is raised to this.",
)
@click.option(
    "--allow-bucket",
    "allow_buckets",
    multiple=True,
    metavar="NAMESPACE=BUCKET",
    callback=_grants("--allow-bucket"),
    help="A bucket GitSyncs of NAMESPACE may read without a secretRef, i.e. with the controller's own AWS "
    "identity (repeatable; globs in both parts). Default: none.",
)
@click.option(
    "--allow-bucket-endpoint",
    "allow_bucket_endpoints",
    multiple=True,
    metavar="NAMESPACE=URL-PREFIX",
    callback=_grants("--allow-bucket-endpoint"),
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
    secret = b""
    if kw["webhook_addr"]:
        if not kw["webhook_secret_file"]:
            _fail("run", ["--webhook-addr needs --webhook-secret-file: unsigned webhooks are never accepted"])
        if not kw["webhook_secret_file"].exists():
            # The Secret volume is optional: install first, configure webhooks later.
            logging.getLogger("reconciler").warning(
                f"{kw['webhook_secret_file']} does not exist: webhooks are off until it does (restart to enable)"
            )
            kw["webhook_addr"] = ""
        else:
            secret = kw["webhook_secret_file"].read_bytes().strip()
            if len(secret) < 16:
                _fail("run", [f"{kw['webhook_secret_file']}: the webhook secret must be at least 16 bytes"])
    identity = os.environ.get("POD_NAME") or f"{platform.node()}-{os.getpid()}"
    eks_opts = None
    if kw["eks_config"]:
        try:
            eks_vars = _parse_pairs(kw["eks_vars"], "--eks-var")
        except click.BadParameter as e:
            _fail("run", [str(e)])
        eks_opts = ekscheck.EksOptions(
            kw["eks_config"], eks_vars, kw["eks_interval"], kw["eks_drift"], kw["eks_region"]
        )
    try:
        kube = connect_cluster(kw, pool_size=controller.pool_size(kw["workers"]))
    except (kube_client.ConfigError, AwsError) as e:
        _fail("run", [str(e)])
    ctl = controller.Controller(
        kube,
        controller.Options(
            namespace=kw["watch_namespace"],
            workers=kw["workers"],
            cache_dir=kw["cache_dir"],
            leader_elect=kw["leader_elect"],
            lease_namespace=kw["lease_namespace"],
            lease_duration=kw["lease_duration"],
            identity=identity,
            metrics_addr=kw["metrics_addr"],
            health_addr=kw["health_addr"],
            webhook_addr=kw["webhook_addr"],
            webhook_secret=secret,
            alertmanager_url=kw["alertmanager_url"],
            policies_dir=kw["policies_dir"],
            eks=eks_opts,
            max_concurrent_per_namespace=kw["max_concurrent_per_namespace"],
            max_timeout=kw["max_timeout"],
            tenancy=tenancy.Tenancy(
                default_service_account=kw["default_service_account"],
                platform_namespaces=frozenset(kw["platform_namespaces"]),
                platform_service_account=kw["platform_service_account"],
                no_cross_namespace_refs=kw["no_cross_namespace_refs"],
                min_policy_mode=kw["min_policy_mode"],
                eks_targets=tuple(
                    tenancy.parse_grant(v, "--allow-eks-target", legacy=True) for v in kw["allow_eks_targets"]
                ),
                buckets=kw["allow_buckets"],
                bucket_endpoints=kw["allow_bucket_endpoints"],
                local_git=False,  # the controller's disk holds every tenant's cache: file:// is the CLI's only
            ),
        ),
        client_factory=controller.client_factory(lambda headers: connect_cluster(kw, headers=headers)),
    )

    def _stop(signum: int, frame: object) -> None:
        ctl.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ctl.run()


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@render_options
def render(path: Path, **kw: Any) -> None:
    """Print the objects PATH renders to (YAML stream), offline."""
    try:
        root, sub = checking.checkout_root(path)
        objs = _render(Artifact(revision="", path=root), {**kw, "subpath": sub})
    except (ManifestError, click.BadParameter) as e:
        _fail("render", [str(e)])
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
            return _render(artifact, kw), revision
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
        _fail(command, e.errors)
    return kube, mapper, manifests, revision


def _options(kw: dict[str, Any], **extra: Any) -> engine.Options:
    name = _default_name(kw)
    _check_name(kw["namespace"], name)
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
        _fail("diff", e.errors)
    try:
        res = engine.run(kube, mapper, manifests, revision, opts)
    except (InventoryError, kube_client.UnreachableError, kube_client.KubeError) as e:
        _fail("diff", [redact.scrub(str(e), secrets)])
    _print_violations(res, secrets)
    if res.errors:
        _fail("diff", [redact.scrub(e, secrets) for e in res.errors])
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
            _fail("sync", e.errors)
        local_watch.run(kw["directory"], lambda: _sync_once(kw, kube, mapper, quiet=True))
        return
    try:
        kube, mapper = _cluster(kw)
    except _FailedError as e:
        _fail("sync", e.errors)
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

        def applied(o: Outcome) -> None:
            bar.update(1)

        yield engine.Progress(applied=applied)


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
def check(path: Path, policies_dir: Path, output: str, **kw: Any) -> None:
    """Check rendered objects against policies, offline (exit 1 on a Deny violation).

    Renders PATH as a sync would and judges every object with the ValidatingAdmissionPolicies
    in --policies, without a cluster.  Exit 0 if nothing is denied (warnings are printed),
    1 on a Deny violation, 2 on an error (a policy or manifest that cannot be loaded).
    """
    try:
        substitute = _substitution(kw)
    except click.BadParameter as e:
        _fail("check", [str(e)])
    text, code = checking.check(
        path, policies_dir, output, substitute=substitute, target_namespace=kw["target_namespace"]
    )
    click.echo(text, nl=False)
    sys.exit(code)


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
        except (kube_client.KubeError, kube_client.UnreachableError) as e:
            click.echo(f"reconciler version: cannot reach the API server: {e}", err=True)
            sys.exit(EXIT_ERROR)
        click.echo(f"server {info.get('gitVersion')} at {kube.host}")


# --------------------------------------------------------------------------- eks


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
        click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="Value for ${NAME} (repeatable)."),
        click.option("--region", default=None, help="AWS region [default: the config's metadata.region]."),
        click.option(
            "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Format."
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _eks_config(command: str, kw: dict[str, Any]) -> clusterconfig.ClusterConfig:
    try:
        variables = _parse_pairs(kw["variables"], "--var")
        cfg = clusterconfig.parse(document.load(kw["config_path"], variables), str(kw["config_path"]))
    except (click.BadParameter, ManifestError, clusterconfig.ClusterConfigError) as e:
        _fail(command, [str(e)])
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
        _fail("eks diff", [str(e)])
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
        res = eks.sync(eks.client(cfg.region), cfg, eksupdate.Wait(timeout, poll_interval), applied)
    except AwsError as e:
        _fail("eks sync", [str(e)])
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
