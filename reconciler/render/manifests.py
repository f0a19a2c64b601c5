"""Load Kubernetes objects from YAML/JSON files, safely.

Only plain data is accepted (``yaml.safe_load_all``): a manifest must never run code or
build arbitrary Python objects.  Every error names the file and the document, because
"invalid manifest" without a location is useless in a repository of hundreds of files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

try:  # the C loader is ~10x faster; fall back to pure Python where libyaml is absent
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


class ManifestError(ValueError):
    """A file that is not a valid set of Kubernetes objects; says where and why."""

    def __init__(self, file: str, doc: int | None, why: str) -> None:
        self.file, self.doc, self.why = file, doc, why
        where = f"{file} (document {doc})" if doc is not None else file
        super().__init__(f"{where}: {why}")


@dataclass(frozen=True)
class Manifest:
    """One object and where it came from (for error messages and duplicate detection)."""

    obj: dict[str, Any]
    file: str
    doc: int


def _check(obj: Any, file: str, doc: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ManifestError(file, doc, f"expected a mapping (a Kubernetes object), got {type(obj).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ManifestError(file, doc, f"field {key} is missing or not a string")
    md = obj.get("metadata")
    if not isinstance(md, dict) or not isinstance(md.get("name"), str) or not md["name"]:
        raise ManifestError(file, doc, f"{obj['kind']}: field metadata.name is missing or not a string")
    return obj


def load_text(text: str, file: str) -> list[Manifest]:
    """All objects of one multi-document YAML (or JSON) text; empty documents are skipped.

    A ``kind: List`` (as ``kubectl get -o yaml`` writes) is flattened into its items.
    """
    out: list[Manifest] = []
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ManifestError(file, None, f"invalid YAML{at}: {getattr(e, 'problem', None) or e}") from e
    for i, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(Manifest(_check(item, file, i), file, i) for item in doc["items"])
            continue
        out.append(Manifest(_check(doc, file, i), file, i))
    return out


def manifest_files(root: Path) -> Iterator[Path]:
    """Every manifest file under ``root``, recursively, in a stable order; hidden dirs skipped."""
    if root.is_file():
        yield root
        return
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel):
            continue
        if p.is_file() and p.suffix in MANIFEST_SUFFIXES:
            yield p


def load_path(root: Path) -> list[Manifest]:
    """All objects under a file or folder; file names in errors are relative to ``root``."""
    if not root.exists():
        raise ManifestError(str(root), None, "no such file or directory")
    base = root if root.is_dir() else root.parent
    out: list[Manifest] = []
    for p in manifest_files(root):
        out.extend(load_text(p.read_text(encoding="utf-8"), str(p.relative_to(base))))
    return out
