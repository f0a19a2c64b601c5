"""Load Kubernetes objects from YAML/JSON text and files, safely.

Only plain data is accepted, typed as kubectl types it (see ``yaml_safe``): a manifest must
never run code, build arbitrary Python objects, mean something other than it means to
``kubectl apply``, or expand into more data than the limits allow.  Every error
names the file and the document, because "invalid manifest" without a location is
useless in a repository of hundreds of files.

``load_path`` is the simple loader (a file or a folder of plain manifests, no kustomize,
no substitution) kept for ``scripts/demo.py``; ``build.render`` is the real pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.render import yaml_safe, yaml_scalars
from reconciler.render.errors import ManifestError
from reconciler.render.options import Limits

__all__ = ["MANIFEST_SUFFIXES", "Manifest", "ManifestError", "load_path", "load_text", "manifest_files"]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Manifest:
    """One object and where it came from (for error messages and duplicate detection).

    ``decrypted`` says the object came out of SOPS decryption: its file was encrypted in git, or
    (after a kustomize build) it is a Secret every value of which came from decrypted files.  The
    plain-secrets policy accepts such Secrets; transformations keep the flag (``dataclasses.replace``).
    """

    obj: dict[str, Any]
    file: str
    doc: int
    decrypted: bool = False  # default False: the object was in clear in the revision


def check_object(obj: Any, file: str, doc: int | None) -> dict[str, Any]:
    """``obj`` if it has what every Kubernetes object needs; ManifestError naming the field otherwise."""
    if not isinstance(obj, dict):
        raise ManifestError(file, doc, f"expected a mapping (a Kubernetes object), got {type(obj).__name__}")
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ManifestError(file, doc, f"field {key} is missing or not a string")
    md = obj.get("metadata")
    if not isinstance(md, dict) or not isinstance(md.get("name"), str) or not md["name"]:
        name = md.get("name") if isinstance(md, dict) else None
        hint = (
            f" (it reads as {json.dumps(name)}, as kubectl reads it: quote it)"
            if isinstance(name, bool | int | float)
            else ""
        )
        raise ManifestError(file, doc, f"{obj['kind']}: field metadata.name is missing or not a string{hint}")
    ns = md.get("namespace")
    if ns is not None and not isinstance(ns, str):
        raise ManifestError(file, doc, f"{obj['kind']}/{md['name']}: field metadata.namespace is not a string")
    for key, value in (("name", md["name"]), ("namespace", ns)):
        if value is not None and (value in (".", "..") or any(c in value for c in "/%\\")):
            # The API server's own rule for names that become path segments: such a name could
            # only turn a request for this object into a request for another one.
            raise ManifestError(
                file,
                doc,
                f"{obj['kind']}/{md['name']}: field metadata.{key} {value!r}"
                " may not be '.', '..' or hold '/', '%' or a backslash",
            )
    for key in ("labels", "annotations"):
        value = md.get(key)
        if value is not None and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            raise ManifestError(file, doc, f"{obj['kind']}/{md['name']}: field metadata.{key} is not a string map")
    return obj


def _yaml_error(e: yaml.YAMLError, file: str) -> ManifestError:
    mark = getattr(e, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ManifestError(file, getattr(e, "doc", None), f"invalid YAML{at}: {getattr(e, 'problem', None) or e}")


def parse_documents(text: str, file: str, limits: Limits = _DEFAULT_LIMITS) -> list[Any]:
    """The documents of one file, read as kubectl reads them; ManifestError naming the file.

    ``.json``: exactly one JSON value.  Any other file whose first non-blank character is
    ``{`` is a stream of JSON objects, because kubectl (apimachinery's YAMLOrJSONDecoder)
    decides JSON or YAML by that character; everything else is YAML (``yaml_safe``).
    """
    if file.endswith(".json"):
        return [_parse_json(text, file)]
    if text.lstrip().startswith("{"):
        return _parse_json_stream(text, file)
    try:
        return yaml_safe.load_all(text, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes)
    except yaml_safe.YAMLLimitError as e:
        at = f" (line {e.line})" if e.line else ""
        raise ManifestError(file, e.doc, f"{e.why}{at}") from e
    except yaml.YAMLError as e:
        raise _yaml_error(e, file) from e
    except RecursionError as e:  # only the pure-Python fallback parser recurses without a depth limit
        raise ManifestError(file, None, "invalid YAML: nested too deeply") from e


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def _parse_json(text: str, file: str) -> Any:
    """JSON with JSON's rules (tabs are fine, NaN is not), which the YAML parser only approximates."""
    try:
        return _kube_numbers(_decoder().decode(text))
    except json.JSONDecodeError as e:
        raise ManifestError(file, None, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    except (ValueError, RecursionError) as e:
        raise ManifestError(file, None, f"invalid JSON: {e}") from e


_JSON_SPACE = " \t\n\r"


def _parse_json_stream(text: str, file: str) -> list[Any]:
    """Concatenated JSON values, as kubectl decodes a file that starts with ``{``."""
    decoder, i = _decoder(), 0
    docs: list[Any] = []
    while True:
        while i < len(text) and text[i] in _JSON_SPACE:
            i += 1
        if i == len(text):
            return docs
        try:
            value, i = decoder.raw_decode(text, i)
            docs.append(_kube_numbers(value))
        except json.JSONDecodeError as e:
            raise ManifestError(
                file,
                len(docs) + 1,
                f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg} (a file whose first character is '{{' "
                "is read as JSON, as kubectl reads it; for YAML flow style, start the file with '---')",
            ) from e
        except (ValueError, RecursionError) as e:
            raise ManifestError(file, len(docs) + 1, f"invalid JSON: {e}") from e


def _kube_numbers(value: Any) -> Any:
    """``value`` with its numbers as the API server's JSON decoding has them (see ``yaml_scalars``)."""
    if isinstance(value, dict):
        return {k: _kube_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_kube_numbers(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    tag = yaml_scalars.INT if isinstance(value, int) else yaml_scalars.FLOAT
    try:
        return yaml_scalars.json_value(tag, value)
    except yaml_scalars.ScalarError:
        raise ValueError("a number is beyond the range of a 64-bit float") from None


def objects_of(docs: list[Any], file: str) -> list[Manifest]:
    """The objects of parsed documents; empty documents are skipped, lists are flattened.

    A list is what kubectl takes for one: any document with an ``items`` field, whatever its
    kind (``List``, kube-prometheus's ``ConfigMapList`` of Grafana dashboards, ...).
    """
    out: list[Manifest] = []
    for i, doc in enumerate(docs, start=1):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("items") is not None:
            if not isinstance(doc["items"], list):
                raise ManifestError(file, i, f"{doc.get('kind') or 'a list'}: field items is not a list")
            out.extend(Manifest(check_object(item, file, i), file, i) for item in doc["items"])
            continue
        out.append(Manifest(check_object(doc, file, i), file, i))
    return out


def load_text(text: str, file: str, limits: Limits = _DEFAULT_LIMITS) -> list[Manifest]:
    """All objects of one multi-document YAML (or JSON, if ``file`` ends in ``.json``) text.

    Empty documents are skipped; a list (``kind: List`` as ``kubectl get -o yaml`` writes it,
    or any other document with ``items``) is flattened into its items.
    """
    return objects_of(parse_documents(text, file, limits), file)


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


def load_path(root: Path, limits: Limits = _DEFAULT_LIMITS) -> list[Manifest]:
    """All objects under a file or folder; file names in errors are relative to ``root``."""
    if not root.exists():
        raise ManifestError(str(root), None, "no such file or directory")
    base = root if root.is_dir() else root.parent
    out: list[Manifest] = []
    for p in manifest_files(root):
        rel = str(p.relative_to(base))
        if p.stat().st_size > limits.max_file_bytes:
            raise ManifestError(rel, None, f"file is larger than the limit of {limits.max_file_bytes} bytes")
        out.extend(load_text(read_text(p, rel), rel, limits))
    return out


def read_text(p: Path, rel: str) -> str:
    """The UTF-8 text of a manifest file; ManifestError naming ``rel`` if it is not UTF-8."""
    return decode_text(p.read_bytes(), rel)


def decode_text(data: bytes, rel: str) -> str:
    """``data`` as UTF-8 text, as ``read_text`` reads a file; ManifestError naming ``rel`` if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(rel, None, f"not UTF-8 text (byte {e.start})") from None
