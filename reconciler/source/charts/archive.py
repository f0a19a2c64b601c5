"""Unpacking a chart archive (``.tgz``) that came from someone else's server.

A chart is untrusted input.  Everything is checked BEFORE anything is written: the gzip
stream is inflated into memory up to a total limit (a gzip bomb stops at the limit, not at
the disk), then every tar header is read and the archive is refused as a whole if any entry

* escapes the chart root (absolute path, ``..`` component, backslash, NUL), or is not under a
  single top-level directory named after the chart,
* is a symlink, a hardlink, a device, a FIFO or anything but a regular file or directory,
* is larger than the per-entry limit, or the entries are too many.

Only then are the regular files written, one by one, with fixed modes, under a fresh
directory; nothing from the archive decides where a file lands except its checked name.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml

from reconciler.source.artifact import SourceError


@dataclass(frozen=True)
class ArchiveLimits:
    max_compressed_bytes: int = 20 * 1024 * 1024
    max_total_bytes: int = 100 * 1024 * 1024
    max_entry_bytes: int = 20 * 1024 * 1024
    max_entries: int = 10_000


def _inflate(data: bytes, limits: ArchiveLimits, label: str) -> bytes:
    if len(data) > limits.max_compressed_bytes:
        raise SourceError(
            f"chart {label}: archive is {len(data)} bytes, over the limit of {limits.max_compressed_bytes}"
        )
    out = io.BytesIO()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            while chunk := gz.read(1 << 16):
                if out.tell() + len(chunk) > limits.max_total_bytes:
                    raise SourceError(
                        f"chart {label}: archive unpacks to more than {limits.max_total_bytes} bytes (size limit)"
                    )
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise SourceError(f"chart {label}: not a gzip archive ({type(e).__name__})") from None
    return out.getvalue()


def _check_name(name: str, label: str) -> PurePosixPath:
    if not name or "\\" in name or "\x00" in name or name.startswith("/"):
        raise SourceError(f"chart {label}: archive entry {name!r} has an absolute or unsafe path")
    p = PurePosixPath(name)
    if any(part == ".." for part in p.parts):
        raise SourceError(f"chart {label}: archive entry {name!r} escapes the chart directory ('..')")
    parts = [part for part in p.parts if part != "."]
    if not parts:
        raise SourceError(f"chart {label}: archive entry {name!r} has an empty path")
    return PurePosixPath(*parts)


def inspect(
    data: bytes, *, chart: str, label: str, limits: ArchiveLimits | None = None
) -> list[tuple[PurePosixPath, bytes | None]]:
    """The archive's entries (path, content; None for a directory), or SourceError: nothing is written."""
    limits = limits or ArchiveLimits()
    raw = _inflate(data, limits, label)
    entries: list[tuple[PurePosixPath, bytes | None]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = tar.getmembers()
            if len(members) > limits.max_entries:
                raise SourceError(f"chart {label}: archive has more than {limits.max_entries} entries")
            for m in members:
                path = _check_name(m.name, label)
                if path.parts[0] != chart:
                    raise SourceError(
                        f"chart {label}: archive entry {m.name!r} is not under the chart directory {chart + '/'!r}"
                    )
                if m.issym() or m.islnk():
                    raise SourceError(f"chart {label}: archive entry {m.name!r} is a link (links are refused)")
                if m.isdir():
                    entries.append((path, None))
                    continue
                if not m.isreg():
                    raise SourceError(
                        f"chart {label}: archive entry {m.name!r} is not a regular file (devices, FIFOs refused)"
                    )
                if m.size > limits.max_entry_bytes:
                    raise SourceError(
                        f"chart {label}: archive entry {m.name!r} is {m.size} bytes, over the limit of "
                        f"{limits.max_entry_bytes}"
                    )
                f = tar.extractfile(m)
                entries.append((path, f.read() if f is not None else b""))
    except tarfile.TarError as e:
        raise SourceError(f"chart {label}: not a valid tar archive ({e})") from None
    if not any(p == PurePosixPath(chart, "Chart.yaml") for p, c in entries if c is not None):
        raise SourceError(f"chart {label}: archive has no {chart}/Chart.yaml")
    return entries


def _check_metadata(entries: list[tuple[PurePosixPath, bytes | None]], *, chart: str, version: str, label: str) -> None:
    """The archive's Chart.yaml must name the chart and version it was fetched as."""
    content = next(c for p, c in entries if p == PurePosixPath(chart, "Chart.yaml") and c is not None)
    try:
        meta = yaml.safe_load(content.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        raise SourceError(f"chart {label}: the archive's Chart.yaml is not valid YAML") from None
    if not isinstance(meta, dict) or meta.get("name") != chart or str(meta.get("version")) != version:
        got = f"{meta.get('name')}@{meta.get('version')}" if isinstance(meta, dict) else "nothing"
        raise SourceError(f"chart {label}: the archive's Chart.yaml says {got}")


def extract(
    data: bytes,
    dest: Path,
    *,
    chart: str,
    label: str,
    version: str | None = None,
    limits: ArchiveLimits | None = None,
) -> Path:
    """Check the whole archive, then write it under ``dest`` (which must not exist); returns the chart dir.

    With ``version``, Chart.yaml must also say that name and version (a repository that serves
    one chart under another version's name is refused, not cached).
    """
    entries = inspect(data, chart=chart, label=label, limits=limits)
    if version is not None:
        _check_metadata(entries, chart=chart, version=version, label=label)
    dest.mkdir(parents=True)
    for path, content in entries:
        target = dest.joinpath(*path.parts)
        try:
            if content is None:
                target.mkdir(parents=True, exist_ok=True, mode=0o755)
                continue
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            with target.open("xb") as f:  # "x": a duplicate entry cannot overwrite a checked file
                f.write(content)
            target.chmod(0o644)
        except FileExistsError:
            raise SourceError(f"chart {label}: archive entry {path.as_posix()!r} appears twice") from None
    return dest / chart
