"""What every source hands to the renderer, and the one error type callers must handle.

The controller keeps the last good :class:`Artifact` when a fetch fails, so a source never
returns half a tree and never touches the previous snapshot on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Artifact:
    """One fetched revision, materialised on disk.

    ``revision`` follows DESIGN's revision string (``main@sha1:<hex>``, ``sha1:<hex>`` for a bare
    commit, ``sha256:<hex>`` for a bucket). ``path`` holds exactly the files of that revision,
    without ``.git``, and stays valid until the next ``fetch()`` of the same source object.
    """

    revision: str
    path: Path


class Source(Protocol):
    """What the controller and the CLI hold, whatever the source: a git repository, a bucket or
    a folder. ``fetch`` raises only :class:`SourceError`; ``close`` frees what the last artifact
    holds on disk."""

    def fetch(self) -> Artifact: ...

    def close(self) -> None: ...


class SourceError(Exception):
    """A fetch failed; the message is one line that names the source, the ref and the reason.

    The message ends up in logs, Events and status conditions, so it is collapsed to a single
    line here and must never carry credentials (callers scrub before raising).
    """

    def __init__(self, reason: str, *, url: str = "", ref: str = "") -> None:
        self.reason = _one_line(reason)
        self.url = url
        self.ref = ref
        where = " ".join(part for part in (url, f"({ref})" if ref else "") if part)
        super().__init__(f"{where}: {self.reason}" if where else self.reason)


def _one_line(text: str) -> str:
    return " ".join(text.split())
