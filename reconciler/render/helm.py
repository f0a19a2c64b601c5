"""Rendering a chart that is already on disk with ``helm template``, into typed parts.

Why ``helm template`` and not a Helm install: we take Argo CD's route.  The chart's objects
are rendered like any other manifests, so the policy gate, the masked diff, drift watches and
two-key prune apply to them too; Helm itself never talks to the cluster.  The caller passes
what the live API server would tell Helm (``kube_version``, ``api_versions`` from discovery)
so ``.Capabilities`` checks render as they would against that cluster.  ``lookup`` has no
cluster to look in and returns an empty map, exactly as in Argo CD.

Nothing here touches the network: the chart directory was fetched by ``source/``; Helm runs
with an empty PATH, a throw-away HOME and configuration, every proxy pointing at a closed
loopback port, and no ``-f URL`` (values go in on stdin).

Values travel on stdin (``--values -``), never as a file: they may hold Secret values, and a
file would put them on disk (and in any backup of the temp dir) for the life of the render.
A pipe keeps them in memory and is gone when Helm exits.  stdin rather than ``/dev/fd/N``
because Helm reads ``-`` natively and it needs no file-descriptor inheritance tricks.

The output is split the way Helm splits it (on ``---`` lines, each document carrying its
``# Source:`` comment) and classified: CRDs (from ``crds/`` through ``--include-crds``, and
any ``CustomResourceDefinition`` a template renders) first, plain objects, and hooks
(``helm.sh/hook``) sorted the way Helm runs them, so the sync can apply pre-install/
pre-upgrade hooks before the rest and post-* hooks after health.  Test hooks are dropped
(``--skip-tests``, and again here for a test annotation Helm left in).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.render import tools, yaml_safe
from reconciler.render.errors import RenderError, describe
from reconciler.render.options import Limits
from reconciler.report.redact import scrub

TIMEOUT_SECONDS = 120.0
_DEAD_PROXY = "http://127.0.0.1:9"
HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"
HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"
# Events the sync can honour; the rest (delete, rollback) have no counterpart in a GitOps sync.
PRE_EVENTS = frozenset({"pre-install", "pre-upgrade"})
POST_EVENTS = frozenset({"post-install", "post-upgrade"})
TEST_EVENTS = frozenset({"test", "test-success", "test-failure"})
DELETE_POLICIES = frozenset({"before-hook-creation", "hook-succeeded", "hook-failed"})
# Helm's install order of kinds (pkg/release/v1/util/kind_sorter.go), used to break ties
# between hooks of the same weight as Helm does.
_INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]
_SPLIT = re.compile(r"(?:^|\n)---[ \t]*(?:\n|$)")
_SOURCE = re.compile(r"^# Source: (.+)$", re.MULTILINE)
_MISSING_DEPS = re.compile(r"found in Chart\.yaml, but missing in charts/ directory: (.+)")


@dataclass(frozen=True)
class Hook:
    """One ``helm.sh/hook`` object and when the sync should apply it."""

    obj: dict[str, Any]
    events: frozenset[str]
    weight: int
    delete_policies: frozenset[str]  # Helm's default is before-hook-creation when none is given
    source: str  # the template it came from, e.g. "demo/templates/job.yaml"

    def sort_key(self) -> tuple[int, int, str]:
        kind = str(self.obj.get("kind", ""))
        rank = _INSTALL_ORDER.index(kind) if kind in _INSTALL_ORDER else len(_INSTALL_ORDER)
        return (self.weight, rank, str((self.obj.get("metadata") or {}).get("name", "")))


@dataclass(frozen=True)
class ChartRender:
    """What one chart rendered to, in the order the sync applies it."""

    chart: str  # "name@version", for messages
    crds: tuple[dict[str, Any], ...]  # from the chart's (and subcharts') crds/: the install/upgrade policy applies
    objects: tuple[dict[str, Any], ...]
    hooks: tuple[Hook, ...]  # every hook the sync can run, in Helm's order (weight, kind, name)
    skipped: tuple[str, ...] = field(default=())  # "Kind/name: why" for test hooks and unsupported events

    def pre_hooks(self, *, upgrade: bool) -> tuple[Hook, ...]:
        """Hooks to apply (and wait for) before the objects: pre-upgrade on an upgrade, else pre-install."""
        event = "pre-upgrade" if upgrade else "pre-install"
        return tuple(h for h in self.hooks if event in h.events)

    def post_hooks(self, *, upgrade: bool) -> tuple[Hook, ...]:
        """Hooks to apply after the objects are healthy."""
        event = "post-upgrade" if upgrade else "post-install"
        return tuple(h for h in self.hooks if event in h.events)


def chart_identity(chart_dir: Path) -> tuple[str, str]:
    """(name, version) from ``Chart.yaml``, or RenderError: every later message names them."""
    meta = chart_dir / "Chart.yaml"
    try:
        docs = yaml_safe.load_all(meta.read_text(encoding="utf-8"), max_aliases=10, max_nodes=100_000)
    except FileNotFoundError:
        raise RenderError(str(chart_dir.name), None, "not a Helm chart: Chart.yaml is missing") from None
    except (yaml.YAMLError, yaml_safe.YAMLLimitError, UnicodeDecodeError) as e:
        raise RenderError(f"{chart_dir.name}/Chart.yaml", None, f"invalid Chart.yaml: {e}") from None
    doc = docs[0] if docs and isinstance(docs[0], dict) else {}
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not name or version is None:
        raise RenderError(f"{chart_dir.name}/Chart.yaml", None, "Chart.yaml needs a name and a version")
    return name, str(version)


def _env(home: str) -> dict[str, str]:
    env = {
        "PATH": "/nonexistent",
        "HOME": home,
        "HELM_CONFIG_HOME": f"{home}/config",
        "HELM_CACHE_HOME": f"{home}/cache",
        "HELM_DATA_HOME": f"{home}/data",
        "HELM_PLUGINS": f"{home}/no-plugins",
        "KUBECONFIG": os.devnull,
        "LANG": "C.UTF-8",
        "NO_PROXY": "",
        "no_proxy": "",
    }
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[key] = _DEAD_PROXY
    return env


def _clean(stderr: str, chart_dir: Path, sensitive: Iterable[str]) -> str:
    """Helm's error as one line (it ends up in an Event and a status condition), without our paths."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("WARNING:", "level=WARN", "Use --debug flag"))
    ]
    msg = " ".join(lines).removeprefix("Error: ").strip() or " ".join(stderr.split())
    for prefix in (str(chart_dir.parent) + os.sep, str(chart_dir)):
        msg = msg.replace(prefix, "")
    if m := _MISSING_DEPS.search(msg):
        msg = (
            f"dependencies {m.group(1).strip()} are declared in Chart.yaml but not vendored in charts/: "
            "run `helm dependency build` and commit charts/ (the renderer never downloads dependencies; "
            "Helm checks every declared dependency, even one whose condition is false)"
        )
    msg = scrub(msg, sensitive)
    return msg if len(msg) <= 2000 else msg[:2000] + " ...(truncated)"


def template_args(
    *,
    chart_dir: Path,
    release_name: str,
    namespace: str,
    kube_version: str | None,
    api_versions: Sequence[str],
) -> list[str]:
    """The ``helm template`` arguments (without the binary): values come on stdin."""
    if release_name.startswith("-") or not release_name:
        raise ValueError(f"invalid release name {release_name!r}")
    args = ["template", release_name, str(chart_dir), "--namespace", namespace, "--values", "-"]
    args += ["--include-crds", "--skip-tests"]
    if kube_version:
        args += ["--kube-version", kube_version]
    for v in api_versions:
        args += ["--api-versions", v]
    return args


def render_chart(
    *,
    chart_dir: Path,
    release_name: str,
    namespace: str,
    values: Mapping[str, Any],
    kube_version: str | None = None,
    api_versions: Sequence[str] = (),
    sensitive: Iterable[str] = (),
    limits: Limits | None = None,
) -> ChartRender:
    """``helm template`` of the chart in ``chart_dir`` with ``values``; RenderError names chart, version, cause.

    ``sensitive`` are strings (Secret-sourced values) scrubbed from any error message.
    """
    limits = limits or Limits()
    name, version = chart_identity(chart_dir)
    label = f"{name}@{version}"
    try:
        stdin = yaml_safe.dump(dict(values)).encode("utf-8")
    except yaml.YAMLError as e:
        raise RenderError(f"chart {label}", None, f"values cannot be written as YAML: {e}") from None
    args = template_args(
        chart_dir=chart_dir,
        release_name=release_name,
        namespace=namespace,
        kube_version=kube_version,
        api_versions=api_versions,
    )
    text = _run_helm(args, stdin=stdin, label=label, chart_dir=chart_dir, sensitive=tuple(sensitive), limits=limits)
    return classify(text, chart=label, limits=limits)


def _run_helm(
    args: list[str], *, stdin: bytes, label: str, chart_dir: Path, sensitive: tuple[str, ...], limits: Limits
) -> str:
    """Helm's stdout (written to a private temp file, size-checked), or RenderError naming the chart."""
    binary = tools.HELM.require(f"chart {label}")
    with tempfile.TemporaryDirectory(prefix="reconciler-helm-") as home:
        out_path = Path(home) / "out.yaml"
        try:
            with out_path.open("wb") as out:
                proc = subprocess.run(
                    [binary, *args],
                    input=stdin,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    env=_env(home),
                    cwd=home,
                    timeout=TIMEOUT_SECONDS,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            raise RenderError(
                f"chart {label}", None, f"helm template did not finish within {TIMEOUT_SECONDS:.0f}s"
            ) from None
        except OSError as e:
            raise RenderError(f"chart {label}", None, f"cannot run helm ({binary}): {e.strerror or e}") from None
        if proc.returncode != 0:
            why = _clean(proc.stderr.decode("utf-8", "replace"), chart_dir, sensitive)
            raise RenderError(f"chart {label}", None, f"helm template failed: {why}")
        size = out_path.stat().st_size
        if size > limits.max_total_bytes:
            raise RenderError(
                f"chart {label}", None, f"rendered output ({size} bytes) exceeds the limit of {limits.max_total_bytes}"
            )
        return out_path.read_text(encoding="utf-8", errors="strict")


def _documents(text: str, chart: str, limits: Limits) -> list[tuple[str, dict[str, Any]]]:
    """(source template, object) for every non-empty document, split as Helm splits a manifest.

    A document without its own ``# Source:`` line belongs to the last one seen: Helm prints a
    file from ``crds/`` as it is, so a CRD file that starts with (or holds) ``---`` puts its
    objects in chunks after the one that carries the comment.
    """
    out: list[tuple[str, dict[str, Any]]] = []
    source = "<unknown template>"
    for chunk in _SPLIT.split(text):
        if m := _SOURCE.search(chunk):
            source = m.group(1).strip()
        try:
            docs = yaml_safe.load_all(chunk, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes)
        except (yaml.YAMLError, yaml_safe.YAMLLimitError) as e:
            raise RenderError(f"chart {chart}", None, f"{source}: rendered invalid YAML: {e}") from None
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
                raise RenderError(f"chart {chart}", None, f"{source}: rendered a document that is not an object")
            out.append((source, doc))
        if len(out) > limits.max_objects:
            raise RenderError(f"chart {chart}", None, f"renders more than {limits.max_objects} objects")
    return out


def _csv(value: Any) -> list[str]:
    return [p.strip() for p in str(value or "").split(",") if p.strip()]


def from_crds_dir(source: str) -> bool:
    """Whether a ``# Source:`` path is in a chart's ``crds/`` (the chart's or a subchart's).

    Only those follow the install/upgrade CRD policy; a CRD a template renders is an ordinary
    object of the release, as it is to Helm.
    """
    parts = source.split("/")
    i = 1
    while i + 2 < len(parts) and parts[i] == "charts":
        i += 2
    return i < len(parts) - 1 and parts[i] == "crds"


def _hook(obj: dict[str, Any], events: frozenset[str], *, source: str, chart: str) -> Hook:
    annotations = obj["metadata"]["annotations"]
    raw_weight = annotations.get(HOOK_WEIGHT, "0")
    try:
        weight = int(str(raw_weight).strip() or "0")
    except ValueError:
        raise RenderError.about(
            describe(obj),
            file=f"chart {chart}",
            doc=None,
            why=f"{source}: {HOOK_WEIGHT} {raw_weight!r} is not an integer",
        ) from None
    policies = frozenset(_csv(annotations.get(HOOK_DELETE_POLICY))) or frozenset({"before-hook-creation"})
    if unknown := policies - DELETE_POLICIES:
        raise RenderError.about(
            describe(obj),
            file=f"chart {chart}",
            doc=None,
            why=f"{source}: unknown {HOOK_DELETE_POLICY} {', '.join(sorted(unknown))}",
        )
    return Hook(obj=obj, events=events, weight=weight, delete_policies=policies, source=source)


def classify(text: str, *, chart: str, limits: Limits | None = None) -> ChartRender:
    """Split ``helm template`` output into CRDs (from ``crds/``), objects and hooks (pure; tested without Helm)."""
    limits = limits or Limits()
    crds: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    hooks: list[Hook] = []
    skipped: list[str] = []
    for source, obj in _documents(text, chart, limits):
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        events = frozenset(_csv(annotations.get(HOOK))) if isinstance(annotations, dict) else frozenset()
        if not events:
            is_crd = obj.get("kind") == "CustomResourceDefinition" and from_crds_dir(source)
            (crds if is_crd else objects).append(obj)
        elif events & TEST_EVENTS:
            skipped.append(f"{describe(obj)}: test hook (never run by a sync)")
        elif not events & (PRE_EVENTS | POST_EVENTS):
            skipped.append(f"{describe(obj)}: hook {','.join(sorted(events))} has no counterpart in a sync")
        else:
            hooks.append(_hook(obj, events, source=source, chart=chart))
    hooks.sort(key=Hook.sort_key)
    return ChartRender(
        chart=chart, crds=tuple(crds), objects=tuple(objects), hooks=tuple(hooks), skipped=tuple(skipped)
    )
