"""The two error types of rendering, and how an object is named in them.

They live apart from the loaders so that every render module can raise them without
import cycles, and so that ``manifests.ManifestError`` and ``build.RenderError`` stay the
same classes wherever they are imported from (callers catch them by class).
"""

from __future__ import annotations

from typing import Any


class ManifestError(ValueError):
    """A file that is not a valid set of Kubernetes objects; says where and why."""

    def __init__(self, file: str, doc: int | None, why: str) -> None:
        self.file, self.doc, self.why = file, doc, why
        where = f"{file} (document {doc})" if doc is not None else file
        super().__init__(f"{where}: {why}")


class RenderError(ManifestError):
    """Rendering failed; names the file (relative to the root), the object and the field.

    A subclass of ManifestError so that a caller catching the old loader error (the CLI,
    the demo) also catches every render failure.  ``obj`` is ``Kind/namespace/name`` (or
    ``Kind/name``) when one object is to blame (see :meth:`about`).
    """

    obj: str | None = None

    @classmethod
    def about(cls, obj: str | None, *, file: str, doc: int | None, why: str) -> RenderError:
        """A failure ``obj`` is to blame for: the message leads with it, ``why`` stays without it."""
        err = cls(file, doc, f"{obj}: {why}" if obj else why)
        err.why, err.obj = why, obj
        return err


def describe(obj: Any) -> str:
    """``Kind/namespace/name`` (``Kind/name`` without a namespace), tolerant of broken objects."""
    if not isinstance(obj, dict):
        return "<not an object>"
    md = m if isinstance(m := obj.get("metadata"), dict) else {}
    kind = obj.get("kind") or "<no kind>"
    name = md.get("name") or "<no name>"
    ns = md.get("namespace")
    return f"{kind}/{ns}/{name}" if ns else f"{kind}/{name}"
