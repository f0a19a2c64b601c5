"""Running the kustomize binary without ever letting it reach the network or leave the checkout.

Why a binary and not a Python re-implementation: kustomize's behaviour (generators, name
hashes, strategic merge with the real OpenAPI schema, components) *is* the specification
users write against; anything else would render differently from ``kustomize build`` and
Flux.  The binary is built from the Go module proxy by ``scripts/build-tool kustomize``.

kustomize fetches remote bases (git clone) and any ``http(s)://`` file reference on its
own, so before it runs, ``preflight`` reads every kustomization it would read (following
local bases and components) and refuses:

* a reference that is a URL, a ``git::``/``git@`` spec or a ``host.tld/...`` repo path,
* a reference that does not exist locally (kustomize would try it as a remote repository),
* a reference resolving (through ``..`` or symlinks) outside the checked-out revision,
* a referenced file over the size limit, and any Helm chart unless ``enable_helm`` (then only
  charts already in the tree, see ``check_helm_charts``).

Defence in depth for what the check might miss: kustomize runs with Helm, plugins, exec
functions and function networking explicitly off (``--enable-*=false``, ``--network=false``), with
``--load-restrictor LoadRestrictionsRootOnly``, an empty ``PATH`` (so no ``git`` or
``helm`` can be started), a throw-away ``HOME``, and every proxy variable pointing at a
closed loopback port, so a stray HTTP request fails on loopback instead of leaving the host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from reconciler.render import toolrun, tools, yaml_safe
from reconciler.render.errors import RenderError
from reconciler.render.options import Limits

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# v5.8.3 needs go >= 1.27; v5.8.2 is the newest that builds with the Go 1.26 toolchain.
KUSTOMIZE_VERSION = "v5.8.2"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
TIMEOUT_SECONDS = toolrun.TIMEOUT_SECONDS
_ENV_BINARY = "RECONCILER_KUSTOMIZE"
# The defaults already, but spelled out: a future default change must not enable them silently.
_NO_EXTENSIONS = (
    "--enable-helm=false",
    "--enable-alpha-plugins=false",
    "--enable-exec=false",
    "--network=false",
)

# Fields holding references kustomize loads through its file loader (which also speaks HTTP).
_DIR_OR_FILE_FIELDS = ("resources", "bases", "components", "generators", "transformers", "validators")
_PLUGIN_FIELDS = ("generators", "transformers", "validators")  # entries may also be inline YAML configs
_FILE_FIELDS = ("crds", "configurations", "patchesStrategicMerge")
_HELM_FIELDS = ("helmCharts", "helmChartInflationGenerator", "helmGlobals")
# Keys that name files inside inline or file-based plugin configs (PatchTransformer.path, ...).
_PLUGIN_PATH_KEYS = ("path", "paths", "files", "envs", "env", "resources")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOSTLIKE = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?/")


def find_kustomization(directory: Path) -> Path | None:
    """The kustomization file of ``directory`` (kustomize's own precedence), if it has one."""
    for name in KUSTOMIZATION_FILES:
        p = directory / name
        if p.is_file():
            return p
    return None


KUSTOMIZE = tools.Tool(
    name="kustomize", package=KUSTOMIZE_MODULE, version=KUSTOMIZE_VERSION, env=_ENV_BINARY, install="make tools"
)
find_binary = KUSTOMIZE.find
require_binary = KUSTOMIZE.require


# --------------------------------------------------------------------------- preflight


def _rel(root: Path, p: Path) -> str:
    try:
        return p.relative_to(root).as_posix() or "."
    except ValueError:
        return str(p)


def looks_remote(entry: str) -> bool:
    """Whether kustomize would fetch ``entry`` over the network (if it does not exist locally)."""
    return bool(
        _SCHEME.match(entry)
        or entry.startswith(("git::", "git@", "gh:"))
        or "?ref=" in entry
        or "?version=" in entry
        or _HOSTLIKE.match(entry)
    )


class _Preflight:
    def __init__(self, root: Path, limits: Limits, *, enable_helm: bool = False) -> None:
        self.root, self.limits, self.enable_helm = root, limits, enable_helm
        self.seen: set[Path] = set()
        self.files: set[Path] = set()  # every file kustomize will read (the closure), real paths

    def check_helm_charts(self, kfile: Path, k: dict[str, Any]) -> None:
        """Allow only charts already in the tree: kustomize would ``helm pull`` a missing one.

        A ``repo`` is refused outright, the chart must exist under ``chartHome`` (inside the
        root, with no symlink leading out: Helm's directory loader follows them), and every
        values file must be local (``helm -f`` would fetch a URL).
        """
        globals_ = k.get("helmGlobals") or {}
        if not isinstance(globals_, dict):
            raise self.fail(kfile, "helmGlobals: expected a mapping")
        if globals_.get("configHome"):
            raise self.fail(kfile, "helmGlobals.configHome: not supported (Helm runs with an empty configuration)")
        home = globals_.get("chartHome") or "charts"
        for i, chart in enumerate(self.items(kfile, k, "helmCharts")):
            where = f"helmCharts[{i}]"
            if chart.get("repo"):
                raise self.fail(
                    kfile,
                    f"{where}.repo: remote chart {chart.get('repo')!r} refused: rendering never touches the "
                    "network; vendor the chart under chartHome (or use a chart source)",
                )
            name = chart.get("name")
            if not isinstance(name, str) or not name or name.startswith("-"):
                raise self.fail(kfile, f"{where}.name: expected a chart name")
            chart_home = self.resolve(kfile, str(home), where="helmGlobals.chartHome")
            assert chart_home is not None
            chart_dir = chart_home / name
            if not (chart_dir / "Chart.yaml").is_file():
                raise self.fail(
                    kfile,
                    f"{where}: chart {name!r} not found under chartHome {home!r} (charts are never pulled)",
                )
            self.check_chart_tree(kfile, chart_dir, where)
            self.files.update(p.resolve() for p in chart_dir.rglob("*") if p.is_file())
            for key in ("valuesFile",):
                if isinstance(chart.get(key), str) and chart[key]:
                    self.resolve(kfile, chart[key], where=f"{where}.{key}")
            for j, entry in enumerate(chart.get("additionalValuesFiles") or []):
                if not isinstance(entry, str):
                    raise self.fail(kfile, f"{where}.additionalValuesFiles[{j}]: expected a string")
                self.resolve(kfile, entry, where=f"{where}.additionalValuesFiles[{j}]")

    def check_chart_tree(self, kfile: Path, chart_dir: Path, where: str) -> None:
        for p in chart_dir.rglob("*"):
            if p.is_symlink() and not p.resolve().is_relative_to(self.root):
                raise self.fail(kfile, f"{where}: {_rel(self.root, p)} is a symlink leading out of the repository")

    def fail(self, kfile: Path, why: str) -> RenderError:
        return RenderError(_rel(self.root, kfile), None, why)

    def resolve(self, kfile: Path, entry: str, *, where: str, inline_ok: bool = False) -> Path | None:
        """The local path ``entry`` names (None for inline YAML), or RenderError saying why it is refused."""
        if inline_ok and "\n" in entry:
            return None
        if not entry.strip():
            raise self.fail(kfile, f"{where}: empty reference")
        if _SCHEME.match(entry) or entry.startswith(("git::", "git@", "gh:")) or "?ref=" in entry:
            raise self.fail(
                kfile,
                f"{where}: remote reference {entry!r} refused: rendering never touches the "
                "network; vendor it into the repository",
            )
        p = Path(entry)
        full = p if p.is_absolute() else kfile.parent / p
        try:
            real = full.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            if looks_remote(entry):
                raise self.fail(
                    kfile,
                    f"{where}: remote reference {entry!r} refused: rendering never touches "
                    "the network; vendor it into the repository",
                ) from None
            raise self.fail(
                kfile, f"{where}: {entry!r} does not exist (and is never fetched from the network)"
            ) from None
        except (OSError, RuntimeError) as e:  # symlink loops
            raise self.fail(kfile, f"{where}: {entry!r} cannot be resolved: {e}") from None
        if not real.is_relative_to(self.root):
            raise self.fail(kfile, f"{where}: {entry!r} points outside the repository (via '..' or a symlink)")
        if real.is_file() and real.stat().st_size > self.limits.max_file_bytes:
            raise self.fail(kfile, f"{where}: {entry!r} is larger than the limit of {self.limits.max_file_bytes} bytes")
        if real.is_file():
            self.files.add(real)
        return real

    def visit(self, directory: Path) -> None:
        """Check the kustomization of ``directory`` and, through them, every base and component it reads."""
        real = directory.resolve()
        if real in self.seen:
            return
        self.seen.add(real)
        kfile = find_kustomization(real)
        if kfile is None:
            return  # kustomize itself reports a resource directory without a kustomization
        self.files.add(kfile)
        k = self.load(kfile)
        self.check_helm_fields(kfile, k)
        self.check_dirs_or_files(kfile, k)
        self.check_files(kfile, k)
        self.check_generators(kfile, k)
        openapi = k.get("openapi")
        if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
            self.resolve(kfile, openapi["path"], where="openapi.path")

    def check_helm_fields(self, kfile: Path, k: dict[str, Any]) -> None:
        for key in _HELM_FIELDS:
            if k.get(key) and not (self.enable_helm and key in ("helmCharts", "helmGlobals")):
                raise self.fail(
                    kfile,
                    f"{key}: Helm charts are not supported here (rendering never runs Helm nor "
                    "downloads charts); render the chart into the repository instead",
                )
        if self.enable_helm and k.get("helmCharts"):
            self.check_helm_charts(kfile, k)

    def check_dirs_or_files(self, kfile: Path, k: dict[str, Any]) -> None:
        """resources, bases, components and plugin configs: directories are visited in turn."""
        for key in _DIR_OR_FILE_FIELDS:
            plugin = key in _PLUGIN_FIELDS
            for i, entry in enumerate(self.strings(kfile, k, key)):
                if (p := self.resolve(kfile, entry, where=f"{key}[{i}]", inline_ok=plugin)) is None:
                    self.scan_plugin(kfile, self.parse_docs(entry), f"{key}[{i}]")
                elif p.is_dir():
                    self.visit(p)
                elif plugin:
                    self.scan_plugin(kfile, self.load_docs(p), f"{key}[{i}]")

    def check_files(self, kfile: Path, k: dict[str, Any]) -> None:
        """Fields that name single files (crds, patches, replacements ...)."""
        for key in _FILE_FIELDS:
            for i, entry in enumerate(self.strings(kfile, k, key)):
                inline = key == "patchesStrategicMerge"
                p = self.resolve(kfile, entry, where=f"{key}[{i}]", inline_ok=inline)
                if p is not None and p.is_dir():
                    raise self.fail(kfile, f"{key}[{i}]: {entry!r} is a directory, expected a file")
        for key in ("patches", "patchesJson6902", "replacements"):
            for i, item in enumerate(self.items(kfile, k, key)):
                if isinstance(item.get("path"), str):
                    self.resolve(kfile, item["path"], where=f"{key}[{i}].path")

    def check_generators(self, kfile: Path, k: dict[str, Any]) -> None:
        """The files and env files of ConfigMap and Secret generators."""
        for key in ("configMapGenerator", "secretGenerator"):
            for i, gen in enumerate(self.items(kfile, k, key)):
                for j, entry in enumerate(gen.get("files") or []):
                    if isinstance(entry, str):
                        self.resolve(kfile, entry.partition("=")[2] or entry, where=f"{key}[{i}].files[{j}]")
                for j, entry in enumerate(gen.get("envs") or []):
                    if isinstance(entry, str):
                        self.resolve(kfile, entry, where=f"{key}[{i}].envs[{j}]")
                if isinstance(gen.get("env"), str):
                    self.resolve(kfile, gen["env"], where=f"{key}[{i}].env")

    def load_docs(self, p: Path) -> list[Any]:
        try:
            return self.parse_docs(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            return []

    def parse_docs(self, text: str) -> list[Any]:
        try:
            return yaml_safe.load_all(text, max_aliases=self.limits.max_aliases, max_nodes=self.limits.max_file_bytes)
        except (yaml.YAMLError, yaml_safe.YAMLLimitError):
            return []  # kustomize reports a malformed plugin config better than we can guess its role

    def load(self, kfile: Path) -> dict[str, Any]:
        if kfile.stat().st_size > self.limits.max_file_bytes:
            raise self.fail(kfile, f"file is larger than the limit of {self.limits.max_file_bytes} bytes")
        try:
            docs = yaml_safe.load_all(
                kfile.read_text(encoding="utf-8"),
                max_aliases=self.limits.max_aliases,
                max_nodes=self.limits.max_file_bytes,
            )
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise self.fail(kfile, f"invalid YAML{at}: {getattr(e, 'problem', None) or e}") from None
        except (yaml_safe.YAMLLimitError, UnicodeDecodeError) as e:
            raise self.fail(kfile, str(e)) from None
        docs = [d for d in docs if d is not None]
        if not docs:
            return {}
        if len(docs) > 1 or not isinstance(docs[0], dict):
            raise self.fail(kfile, "expected one mapping (a Kustomization)")
        return docs[0]

    def strings(self, kfile: Path, k: dict[str, Any], key: str) -> list[str]:
        value = k.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(kfile, f"{key}: expected a list of strings")
        return value

    def items(self, kfile: Path, k: dict[str, Any], key: str) -> list[dict[str, Any]]:
        value = k.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(kfile, f"{key}: expected a list of mappings")
        return value

    def scan_plugin(self, kfile: Path, docs: list[Any], where: str) -> None:
        """Refuse remote references anywhere in a plugin config (builtin transformers load files too)."""
        docs = [d for d in docs if d is not None]
        for n, doc in enumerate(docs, start=1):
            self.scan_plugin_doc(kfile, doc, where if len(docs) == 1 else f"{where}(document {n})")

    def scan_plugin_doc(self, kfile: Path, doc: Any, where: str) -> None:
        for value, path in _walk_strings(doc, where):
            if path.rsplit(".", 1)[-1].split("[")[0] in _PLUGIN_PATH_KEYS and looks_remote(value):
                raise self.fail(
                    kfile,
                    f"{path}: remote reference {value!r} refused: rendering never touches "
                    "the network; vendor it into the repository",
                )


def _walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, f"{path}[{i}]")


def preflight(root: Path, directory: Path, *, limits: Limits, enable_helm: bool = False) -> frozenset[Path]:
    """Refuse the kustomization in ``directory`` if building it could touch the network or leave ``root``;
    otherwise the files the build will read (real paths: kustomizations and every file they name).

    ``enable_helm`` allows ``helmCharts`` whose charts are already in the tree (see ``run_build``).
    """
    check = _Preflight(root, limits, enable_helm=enable_helm)
    check.visit(directory)
    return frozenset(check.files)


# --------------------------------------------------------------------------- running


def _env(home: str) -> dict[str, str]:
    """kustomize's own variables on top of the sealed environment (toolrun.sealed_env)."""
    return {
        "XDG_CONFIG_HOME": home,
        "XDG_CACHE_HOME": home,
        "KUSTOMIZE_PLUGIN_HOME": str(Path(home) / "no-plugins"),
        "GIT_ALLOW_PROTOCOL": "none",
    }


def _clean_message(stderr: str, root: Path) -> str:
    msg = stderr.strip()
    msg = msg.removeprefix("Error: ").strip()
    # kyaml appends the YAML of the node it choked on: object content (maybe Secret data) stays out.
    msg = msg.split(": node contents:", 1)[0]
    for prefix in (str(root) + os.sep, str(root)):
        msg = msg.replace(prefix, "")
    if len(msg) > 2000:
        msg = msg[:2000] + " ...(truncated)"
    return msg


def _helm_flags(file: str, kube_version: str | None, api_versions: Sequence[str]) -> list[str]:
    flags = ["--enable-helm", "--helm-command", tools.HELM.require(file)]
    if kube_version:
        flags += ["--helm-kube-version", kube_version]
    for v in api_versions:
        flags += ["--helm-api-versions", v]
    return flags


def run_build(
    root: Path,
    directory: Path,
    *,
    max_output: int,
    file: str | None = None,
    enable_helm: bool = False,
    helm_kube_version: str | None = None,
    helm_api_versions: Sequence[str] = (),
    workdir: Path | None = None,
) -> str:
    """``kustomize build`` of ``directory`` (inside ``root``): its stdout, or RenderError naming the kustomization.

    ``file`` is the name errors carry (default: the kustomization file relative to ``root``);
    paths in kustomize's message are made relative to ``root`` so the message is the same
    on every machine (and does not leak where the controller keeps its checkouts).

    ``enable_helm`` lets kustomize's ``helmCharts`` generator run the pinned Helm (found like
    kustomize; ``preflight(..., enable_helm=True)`` must have passed: charts come from the tree,
    never a repository).  ``helm_kube_version``/``helm_api_versions`` feed ``.Capabilities``.
    ``workdir`` is where kustomize's throw-away home and output file go (default: the system's
    temporary folder); a build of decrypted files passes its memory folder (see ``decrypt_tree``).
    """
    kfile = find_kustomization(directory)
    file = file or _rel(root, kfile or directory)
    binary = require_binary(file)
    extensions = list(_NO_EXTENSIONS)
    if enable_helm:
        extensions.remove("--enable-helm=false")
        extensions += _helm_flags(file, helm_kube_version, helm_api_versions)
    run = toolrun.ToolRun(
        tool="kustomize",
        what=f"kustomize build of {_rel(root, directory)}",
        file=file,
        max_output=max_output,
        env=_env,
        clean=lambda stderr: _clean_message(stderr, root),
        too_large=lambda size: (
            f"kustomize build output ({size} bytes) exceeds the remaining limit of {max_output} bytes (max_total_bytes)"
        ),
        timeout=TIMEOUT_SECONDS,
    )
    cmd = [binary, "build", "--load-restrictor", "LoadRestrictionsRootOnly", *extensions, str(directory)]
    return toolrun.run_tool(cmd, run=run, workdir=workdir)
