"""What a caller can ask of a render: limits, variables, patches, a target namespace.

Validation happens here, at the edge, so that a bad GitSync spec fails with the name of
the bad field before any file is read (the controller reports it as a spec error, not as
a broken revision).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.render import selectors, yaml_safe
from reconciler.render.decryption import Decryption


@dataclass(frozen=True)
class Limits:
    """Bounds on what one revision may make us parse, so a hostile repository cannot exhaust memory."""

    max_file_bytes: int = 4 * 1024 * 1024  # bytes of one file (and of one object after substitution); default 4 MiB
    max_objects: int = 10_000  # objects in one revision; default 10,000
    max_aliases: int = 100  # YAML alias uses per document, counted after expansion (billion-laughs guard); default 100
    max_total_bytes: int = 64 * 1024 * 1024  # bytes read and rendered for one revision; default 64 MiB


TARGET_KEYS = ("group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")


@dataclass(frozen=True)
class Patch:
    """One entry of the GitSync ``patches`` field (the same shape as Flux and kustomize use).

    ``patch`` is YAML or JSON text: a list of RFC 6902 operations, or a strategic-merge
    partial object.  ``target`` selects the objects; group, version, kind, name and
    namespace are anchored regular expressions, as in kustomize.
    """

    patch: str  # the patch text; no default
    target: Mapping[str, str] | None = None  # which objects; default None (a strategic merge names its object)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Patch:
        """A Patch from the GitSync spec; ValueError naming the bad field otherwise."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"patch: expected a mapping with fields patch and target, got {type(spec).__name__}")
        unknown = sorted(set(spec) - {"patch", "target"})
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (expected patch and target)")
        text = spec.get("patch")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("patch: must be a non-empty string (a JSON6902 list or a strategic-merge object)")
        target = spec.get("target")
        if target is not None and not isinstance(target, Mapping):
            raise ValueError(f"target: expected a mapping, got {type(target).__name__}")
        p = cls(patch=text, target=dict(target) if target is not None else None)
        p.check()
        return p

    def check(self) -> None:
        """Raise ValueError (naming the field) unless the patch text and target are usable."""
        if self.target is not None:
            _check_target(self.target)
        docs = _patch_documents(self.patch)
        if len(docs) == 1 and isinstance(docs[0], list):
            if self.target is None:
                raise ValueError("target: a JSON6902 patch needs a target (at least kind)")
            _check_operations(docs[0])
            return
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict):
                raise ValueError(f"patch: document {i + 1} is neither a JSON6902 list nor a strategic-merge object")
            if self.target is None:
                _check_untargeted(doc)
        if self.target is not None and len(docs) > 1:
            raise ValueError("patch: a strategic-merge patch with a target must be a single document")


def _check_target(target: Mapping[str, Any]) -> None:
    for key, value in target.items():
        if key not in TARGET_KEYS:
            raise ValueError(f"target.{key}: unknown field (expected one of {', '.join(TARGET_KEYS)})")
        if not isinstance(value, str):
            raise ValueError(f"target.{key}: must be a string")
    selectors.Target.parse(target)  # regex and selector syntax, with the field named


def _patch_documents(text: str) -> list[Any]:
    """The non-empty YAML documents of a patch text; ValueError naming ``patch`` otherwise."""
    try:
        docs = [d for d in yaml_safe.load_all(text, max_aliases=100, max_nodes=1 << 20) if d is not None]
    except yaml_safe.YAMLLimitError as e:
        raise ValueError(f"patch: {e.why}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"patch: invalid YAML{at}: {getattr(e, 'problem', None) or e}") from e
    if not docs:
        raise ValueError("patch: is empty")
    return docs


def _check_operations(ops: list[Any]) -> None:
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise ValueError(f"patch: operation {i} needs string fields op and path")


def _check_untargeted(doc: Mapping[str, Any]) -> None:
    """A strategic-merge patch without a target selects its object by its own identity."""
    md = doc.get("metadata")
    if not (doc.get("apiVersion") and doc.get("kind") and isinstance(md, dict) and md.get("name")):
        raise ValueError(
            "patch: a strategic-merge patch without a target needs apiVersion, kind and metadata.name "
            "(they select the object it patches)"
        )


_NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class RenderOptions:
    """Per-GitSync render settings (the controller merges ``substitute`` and ``substituteFrom``).

    ``substitute`` None means substitution was not asked for: every ``${...}`` is kept as
    written.  A mapping, even an empty one, turns strict substitution on (see substitute).
    """

    substitute: Mapping[str, str] | None = None  # ``${VAR}`` values; default None (no substitution)
    secret_vars: frozenset[str] = (
        frozenset()
    )  # names whose values came from Secrets: never echoed in errors; default none
    patches: Sequence[Patch] = ()  # applied in order after the build; default none
    target_namespace: str | None = None  # namespace for every namespaced object; default None (as written)
    limits: Limits = Limits()  # parsing bounds; default Limits()
    decryption: Decryption | None = None  # SOPS keys and decryptor; default None (encrypted files are an error)

    def secret_values(self) -> frozenset[str]:
        """The values that must never appear in an error message."""
        values = self.substitute or {}
        return frozenset(v for k, v in values.items() if k in self.secret_vars and v)


def valid_namespace(name: str) -> bool:
    """Whether ``name`` is a namespace name the API server accepts (an RFC 1123 label)."""
    return bool(_NAMESPACE_RE.fullmatch(name))
