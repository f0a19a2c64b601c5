"""``render()``: the files of one checked-out revision -> Kubernetes objects, offline.

The pipeline, in Flux's order so that repositories behave the same under both:

1. **Collect.**  ``path`` (relative to the checkout, never escaping it) is a file or a
   folder.  A folder with a kustomization is built by kustomize; otherwise every
   ``*.yaml|*.yml|*.json`` below it is loaded, recursively, sorted by name, skipping
   hidden files and folders, except that a sub-folder with a kustomization is built by
   kustomize as a unit (its files are not loaded raw).  A YAML file in a plain folder
   that is not a Kubernetes object is an error: a typo must not silently drop an object.
2. **Patches** from the GitSync, in order (``patches``).
3. **targetNamespace** on every namespaced object (``namespaces``).
4. **Substitution** of ``${VAR}``, only when asked for (``substitute`` not None; then
   strict, even with no variables).  Not asked for: objects are kept verbatim.
5. **Identity check**: two objects with the same group, kind, namespace and name are an
   error naming both files (one would silently win in the cluster).

Output order is file order, then document order (kustomize's own order inside a
kustomization), so renders of the same revision are identical and diffs are stable.

Every error is a RenderError naming the file relative to the checkout, the object where
one is to blame, and the field or variable.  Values of Secret-sourced variables are
scrubbed from every message (``report.redact.scrub``) as a last line of defence, and the
exception chain is cut so a traceback cannot carry them either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path, PurePosixPath

from reconciler.render import kustomize, sops_render
from reconciler.render.decryption import Decryption
from reconciler.render.errors import ManifestError, RenderError, describe
from reconciler.render.manifests import MANIFEST_SUFFIXES, Manifest, decode_text, load_text
from reconciler.render.namespaces import Scope, set_namespace
from reconciler.render.options import Limits, Patch, RenderOptions, valid_namespace
from reconciler.render.patches import apply_patches
from reconciler.render.selectors import group_version
from reconciler.render.substitute import substitute_manifest
from reconciler.report.redact import scrub

__all__ = ["Limits", "Manifest", "ManifestError", "Patch", "RenderError", "RenderOptions", "confine", "render"]

_DEFAULT_OPTIONS = RenderOptions()


def render(root: Path, path: str, options: RenderOptions = _DEFAULT_OPTIONS) -> list[Manifest]:
    """The objects of ``root/path`` (see the module docstring); RenderError on any problem.

    ``root`` is a checked-out revision (a plain directory); ``path`` is relative to it.
    Never touches the network.
    """
    secrets = options.secret_values()
    try:
        return _render(Path(root), path, options)
    except RenderError as e:
        if not secrets:
            raise
        obj = scrub(e.obj, secrets) if e.obj else None
        raise RenderError.about(obj, file=scrub(e.file, secrets), doc=e.doc, why=scrub(e.why, secrets)) from None


def _render(root: Path, path: str, options: RenderOptions) -> list[Manifest]:
    try:
        root_real = root.resolve(strict=True)
    except (OSError, RuntimeError):
        raise RenderError(str(root), None, "the checkout directory does not exist") from None
    if not root_real.is_dir():
        raise RenderError(str(root), None, "the checkout is not a directory")
    _check_options(options)
    start, rel = _confine(root_real, path)
    budget = _Budget(options.limits, options.decryption)
    manifests = _collect(root_real, start, rel=rel, budget=budget)
    scope = Scope(m.obj for m in manifests)
    _check_unique(manifests, scope)
    if options.patches:
        manifests = apply_patches(manifests, options.patches, scope=scope, limits=options.limits)
    if options.target_namespace:
        manifests = set_namespace(manifests, options.target_namespace, Scope(m.obj for m in manifests))
    if options.substitute is not None:  # opt-in, as Flux's postBuild; then strict (see substitute)
        variables = options.substitute
        manifests = [
            substitute_manifest(m, variables, secret_vars=options.secret_vars, limits=options.limits) for m in manifests
        ]
    _check_unique(manifests, Scope(m.obj for m in manifests))  # patches, targetNamespace, values can collide
    return manifests


def _check_options(options: RenderOptions) -> None:
    """A bad GitSync spec fails naming its field before any file is read (it is not the revision's fault)."""
    ns = options.target_namespace
    if ns and not valid_namespace(ns):
        raise RenderError("targetNamespace", None, f"{ns!r} is not a valid namespace name (RFC 1123 label)")
    for i, patch in enumerate(options.patches):
        try:
            patch.check()
        except ValueError as e:
            raise RenderError(f"patches[{i}]", None, str(e)) from None


# --------------------------------------------------------------------------- where to read


def confine(root: Path, path: str) -> Path:
    """The real path ``path`` names inside the checkout ``root``: RenderError if it is absolute,
    climbs out with ``..`` or a symlink, or does not exist.  Callers that read the tree before
    rendering it (the inputs digest) use it so that nothing is read outside the revision."""
    try:
        root_real = Path(root).resolve(strict=True)
    except (OSError, RuntimeError):
        raise RenderError(str(root), None, "the checkout directory does not exist") from None
    return _confine(root_real, path)[0]


def _confine(root: Path, path: str) -> tuple[Path, str]:
    """The real path ``path`` names inside ``root`` and its clean relative form; RenderError if it escapes."""
    raw = (path or ".").strip()
    pure = PurePosixPath(raw)
    if pure.is_absolute():
        raise RenderError(raw, None, "path must be relative to the root of the revision")
    norm = os.path.normpath(raw)
    if norm == ".." or norm.startswith("../"):
        raise RenderError(raw, None, "path escapes the root of the revision ('..')")
    try:
        real = (root / norm).resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise RenderError(norm, None, "no such file or directory in the revision") from None
    except (OSError, RuntimeError, ValueError) as e:  # ValueError: a NUL byte (`reconciler sync --path`)
        raise RenderError(norm, None, f"cannot resolve path: {e}") from None
    if not real.is_relative_to(root):
        raise RenderError(norm, None, "path escapes the root of the revision (through a symlink)")
    return real, norm


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir in ("", ".") else f"{rel_dir}/{name}"


class _Found(StrEnum):
    """What the walk of a folder found: each is rendered its own way."""

    FILE = "file"  # a manifest file: loaded as it is
    KUSTOMIZATION = "kustomize"  # a folder with a kustomization: built by kustomize, not walked further


def _walk(root: Path, directory: Path, *, rel_dir: str, active: frozenset[Path]) -> Iterator[tuple[_Found, Path, str]]:
    """(what was found, real path, path relative to root as walked), in name order."""
    try:
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        raise RenderError(rel_dir, None, f"cannot list the folder: {err.strerror or err}") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        rel = _join(rel_dir, e.name)
        p = Path(e.path)
        real = p
        if e.is_symlink():
            try:
                real = p.resolve(strict=True)
            except (OSError, RuntimeError):
                if p.suffix in MANIFEST_SUFFIXES:
                    raise RenderError(rel, None, "broken symlink") from None
                continue
            if not real.is_relative_to(root):
                raise RenderError(rel, None, "symlink points outside the root of the revision")
        if real.is_dir():
            if real in active:
                raise RenderError(rel, None, "symlink loop (a folder links to one of its parents)")
            if kustomize.find_kustomization(real) is not None:
                yield _Found.KUSTOMIZATION, real, rel
            else:
                yield from _walk(root, real, rel_dir=rel, active=active | {real})
        elif real.is_file() and p.suffix in MANIFEST_SUFFIXES:
            yield _Found.FILE, real, rel


def _collect(root: Path, start: Path, *, rel: str, budget: _Budget) -> list[Manifest]:
    if start.is_file():
        if start.name in kustomize.KUSTOMIZATION_FILES:
            return _build(root, start.parent, rel_dir=PurePosixPath(rel).parent.as_posix(), budget=budget)
        return _load_file(start, rel, budget)
    if kustomize.find_kustomization(start) is not None:
        return _build(root, start, rel_dir=rel, budget=budget)
    out: list[Manifest] = []
    found = list(_walk(root, start, rel_dir=rel, active=frozenset({start})))
    files = [(real, sub) for kind, real, sub in found if kind == _Found.FILE]
    budget.predecrypted.update(sops_render.predecrypt(files, limits=budget.limits, decryption=budget.decryption))
    for kind, real, sub in found:
        out.extend(
            _build(root, real, rel_dir=sub, budget=budget)
            if kind == _Found.KUSTOMIZATION
            else _load_file(real, sub, budget)
        )
    return out


def _as_render_error(e: ManifestError) -> RenderError:
    return e if isinstance(e, RenderError) else RenderError(e.file, e.doc, e.why)


def _load_file(real: Path, rel: str, budget: _Budget) -> list[Manifest]:
    limits = budget.limits
    try:
        size = real.stat().st_size
    except OSError as e:
        raise RenderError(rel, None, f"cannot read: {e.strerror or e}") from None
    if size > limits.max_file_bytes:
        raise RenderError(
            rel, None, f"file is {size} bytes, over the limit of {limits.max_file_bytes} (max_file_bytes)"
        )
    budget.add_bytes(size, rel)
    try:
        data = real.read_bytes()
        ms = sops_render.load_encrypted(
            data, file=rel, limits=limits, decryption=budget.decryption, predecrypted=budget.predecrypted
        )
        if ms is None:
            ms = load_text(decode_text(data, rel), rel, limits)
    except ManifestError as e:
        raise _as_render_error(e) from None
    except OSError as e:
        raise RenderError(rel, None, f"cannot read: {e.strerror or e}") from None
    budget.add_objects(len(ms), rel)
    return ms


def _build(root: Path, directory: Path, *, rel_dir: str, budget: _Budget) -> list[Manifest]:
    kfile = kustomize.find_kustomization(directory)
    file = _join(rel_dir, kfile.name if kfile else kustomize.KUSTOMIZATION_FILES[0])
    size, ms = sops_render.build(
        root,
        directory,
        file=file,
        max_output=budget.remaining_bytes(),
        limits=budget.limits,
        decryption=budget.decryption,
    )
    budget.add_bytes(size, file)
    budget.add_objects(len(ms), file)
    return ms


class _Budget:
    """Running totals against ``max_total_bytes`` and ``max_objects``, so a huge revision fails early;
    it also carries what every file of the walk is read with (limits, SOPS decryption)."""

    def __init__(self, limits: Limits, decryption: Decryption | None = None) -> None:
        self.limits, self.bytes, self.objects = limits, 0, 0
        self.decryption = decryption
        self.predecrypted: sops_render.Predecrypted = {}  # plaintexts decrypted ahead of the walk

    def remaining_bytes(self) -> int:
        return max(0, self.limits.max_total_bytes - self.bytes)

    def add_bytes(self, n: int, file: str) -> None:
        self.bytes += n
        if self.bytes > self.limits.max_total_bytes:
            raise RenderError(file, None, f"the revision exceeds {self.limits.max_total_bytes} bytes (max_total_bytes)")

    def add_objects(self, n: int, file: str) -> None:
        self.objects += n
        if self.objects > self.limits.max_objects:
            raise RenderError(file, None, f"the revision has more than {self.limits.max_objects} objects (max_objects)")


# --------------------------------------------------------------------------- identity


def _check_unique(manifests: list[Manifest], scope: Scope) -> None:
    seen: dict[tuple[str, str, str, str], Manifest] = {}
    for m in manifests:
        md = m.obj["metadata"]
        ns = "" if scope.cluster_scoped(m.obj) else (md.get("namespace") or "")
        key = (group_version(m.obj["apiVersion"])[0], m.obj["kind"], ns, md["name"])
        if (first := seen.get(key)) is not None:
            raise RenderError.about(
                describe(m.obj),
                file=m.file,
                doc=m.doc,
                why=f"duplicate object: defined in {first.file} (document {first.doc}) and again in {m.file} "
                f"(document {m.doc}); group, kind, namespace and name must be unique",
            )
        seen[key] = m
