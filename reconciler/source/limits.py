"""Caps on what one revision of a tenant's source may make the controller store or read.

A GitSync's repository or bucket is chosen by a tenant, and every GitSync shares the
controller's memory and its cache volume: a compressible multi-gigabyte blob, a million tiny
files, or a single huge file must fail that GitSync with a message naming the file and the cap,
never fill ``/cache`` or exhaust memory.  The same numbers bound every source (git export,
bucket download) and every walk over an artifact (the inputs digest), and they sit well above
what a manifest tree needs: rendering itself stops at 4 MiB a manifest and 64 MiB a revision
(``render.options.Limits``), so a tree near these caps could never sync anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.source.artifact import SourceError

MiB = 1024 * 1024


@dataclass(frozen=True)
class TreeLimits:
    """Per revision: files, bytes of the largest file, bytes of all files together."""

    max_files: int = 50_000  # files (and symlinks) in one revision; default 50,000
    max_file_bytes: int = 64 * MiB  # bytes of the largest file; default 64 MiB
    max_total_bytes: int = 1024 * MiB  # bytes of all files together; default 1 GiB


DEFAULT = TreeLimits()


class TreeLimitError(SourceError):
    """A revision holds more than a :class:`TreeLimits` cap allows; the message names the file and the cap."""


def file_too_large(name: str, size: int, limits: TreeLimits) -> TreeLimitError:
    return TreeLimitError(f"{name} is {size} bytes, over the limit of {limits.max_file_bytes} bytes for one file")


def too_many_files(name: str, limits: TreeLimits) -> TreeLimitError:
    return TreeLimitError(f"more than {limits.max_files} files (the limit) at {name}")


def too_many_bytes(name: str, limits: TreeLimits) -> TreeLimitError:
    return TreeLimitError(f"more than {limits.max_total_bytes} bytes in all (the limit) at {name}")


class Tally:
    """Running totals of a walk over one tree; raises :class:`TreeLimitError` as soon as a cap is passed."""

    def __init__(self, limits: TreeLimits = DEFAULT) -> None:
        self.limits, self.files, self.bytes = limits, 0, 0

    def add(self, name: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise file_too_large(name, size, self.limits)
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise too_many_files(name, self.limits)
        if self.bytes > self.limits.max_total_bytes:
            raise too_many_bytes(name, self.limits)
