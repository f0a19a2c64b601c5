"""What every command shares: exit codes, option groups, durations and NAME=VALUE pairs.

Also how a source and a cluster are opened from flags, so each command module stays about its command.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
from click.core import ParameterSource

from reconciler.aws import target as eks_target
from reconciler.gitsync import spec, tenancy
from reconciler.kube import client as kube_client
from reconciler.render import build as render_build
from reconciler.render.manifests import Manifest
from reconciler.report import durations
from reconciler.source import bucket as bucket_source
from reconciler.source import git as git_source
from reconciler.source.artifact import Artifact, Source
from reconciler.source.local import LocalSource

EXIT_OK, EXIT_CHANGES, EXIT_ERROR = 0, 1, 2
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gitops-reconciler" / "git"


def fail(command: str, errors: list[str]) -> NoReturn:
    for e in errors:
        click.echo(f"reconciler {command}: error: {e}", err=True)
    sys.exit(EXIT_ERROR)


def parse_pairs(pairs: tuple[str, ...], flag: str) -> dict[str, str]:
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


def allow_pattern(text: str) -> str:
    """One ``--allow-eks-target`` value (``[NAMESPACE=]CLUSTER/REGION``), refused at start rather
    than silently never matching."""
    try:
        spec.allow_pattern(tenancy.parse_grant(text, "--allow-eks-target", legacy=True).value)
    except spec.SpecError as e:
        raise click.BadParameter(str(e), param_hint="--allow-eks-target") from e
    return text


def grants(flag: str) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple[tenancy.Grant, ...]]:
    """A click callback for a repeatable ``NAMESPACE=VALUE`` allow-list flag."""

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[tenancy.Grant, ...]:
        try:
            return tuple(tenancy.parse_grant(v, flag) for v in values)
        except spec.SpecError as e:
            raise click.BadParameter(str(e), param_hint=flag) from e

    return parse


def service_account(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    try:
        return tenancy.parse_service_account(value, "--platform-service-account")
    except spec.SpecError as e:
        raise click.BadParameter(str(e), param_hint="--platform-service-account") from e


def names(flag: str, check: Callable[[Any, str], str]) -> Callable[..., Any]:
    def parse(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            if isinstance(value, tuple):
                return tuple(check(v, flag) for v in value)
            return None if value is None else check(value, flag)
        except spec.SpecError as e:
            raise click.BadParameter(str(e), param_hint=flag) from e

    return parse


def duration_option(text: str, name: str) -> float:
    """A Go-style duration flag (``30m``, ``1h``), refused at start when it is not one."""
    try:
        seconds = spec.parse_duration(text, "x")
    except spec.SpecError:
        raise click.BadParameter(f"{text!r} is not a duration like 30m or 1h", param_hint=name) from None
    if seconds < 1:
        raise click.BadParameter("must be at least 1s", param_hint=name)
    return seconds


def substitution(kw: dict[str, Any]) -> dict[str, str] | None:
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
        values.update(parse_pairs(tuple(lines), f"--substitute-from {file}"))
    values.update(parse_pairs(kw["substitute"], "--substitute"))  # inline values win, as in a GitSync
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
        check_connection_flags(kw)
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
        click.option(
            "--request-timeout",
            type=Duration(minimum=1),
            default="60s",
            show_default=True,
            help="How long one API request waits for its answer (a hung API server or a dead connection "
            "fails the sync after this, by reason).",
        ),
    ]
    for o in reversed(opts):
        checked = o(checked)
    return checked


def check_connection_flags(kw: dict[str, Any]) -> None:
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
        kube = eks_target.connect(kw["eks_cluster"], kw["region"], pool_size=pool_size, headers=headers)
    else:
        kube = kube_client.connect(kw["kubeconfig"], kw["context"], pool_size=pool_size, headers=headers)
    kube.read_timeout = float(kw.get("request_timeout") or kube.read_timeout)
    return kube


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
        src = git_source.GitSource(repo, ref(kw), cache_dir=kw["cache_dir"], credentials=git_credentials(kw))
    try:
        yield src.fetch()
    finally:
        src.close()


def ref(kw: dict[str, Any]) -> git_source.GitRef:
    try:
        return parse_ref(kw["ref"])
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ref") from e


def git_credentials(kw: dict[str, Any]) -> git_source.GitCredentials:
    return git_source.GitCredentials(
        ssh_private_key=kw["ssh_key"].read_bytes() if kw["ssh_key"] else None,
        known_hosts=kw["known_hosts"].read_bytes() if kw["known_hosts"] else None,
        username=kw["username"],
        password=kw["password_file"].read_text().strip() if kw["password_file"] else None,
        ca_bundle=kw["ca_file"].read_bytes() if kw["ca_file"] else None,
    )


def render_artifact(artifact: Artifact, kw: dict[str, Any]) -> list[Manifest]:
    opts = render_build.RenderOptions(
        substitute=substitution(kw), target_namespace=kw["target_namespace"], decryption=kw.get("decryption")
    )
    return render_build.render(artifact.path, kw.get("subpath") or ".", opts)


def default_name(kw: dict[str, Any]) -> str:
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


def check_name(namespace: str, name: str) -> None:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(f"{namespace}.{name}") > 63:
        raise click.BadParameter(
            f"{name!r}: must be a DNS label, and '<namespace>.<name>' (the owner label value) at most 63 characters",
            param_hint="--name",
        )
