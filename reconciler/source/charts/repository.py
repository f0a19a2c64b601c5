"""Charts from an HTTP(S) Helm repository: ``index.yaml``, a version range, a digest-checked archive.

The index is fetched on every call (it says which version is the newest), but conditionally
(``If-None-Match``/``If-Modified-Since`` against the copy kept beside the chart cache), so an
unchanged repository answers 304 with no body.  The archive is downloaded only when the chart
cache has no entry for (repository, name, version, digest); its sha256 must equal the digest
the index lists, else the fetch fails and nothing is cached.

Credentials go only to the repository's own origin: a chart URL on another host gets no
``Authorization`` (Helm's default, ``--pass-credentials`` off).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.source.artifact import SourceError
from reconciler.source.charts import archive, semver
from reconciler.source.charts.cache import CacheKey, ChartCache
from reconciler.source.charts.model import ChartArtifact
from reconciler.source.charts.transport import Credentials, Transport, redact_url, same_origin

MAX_INDEX_BYTES = 64 * 1024 * 1024
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    urls: tuple[str, ...]
    digest: str  # hex, "" when the index has none


def parse_index(text: bytes, *, name: str, repo: str) -> list[IndexEntry]:
    """The entries of chart ``name`` in an index.yaml; SourceError if the index is malformed.

    Only ``entries[name]`` is read, field by field with type checks; the C loader keeps a
    multi-megabyte public index fast (aliases are shared, never expanded, by the loader).
    """
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise SourceError(f"chart {name}: index.yaml of {repo} is not valid YAML{at}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), dict):
        raise SourceError(f"chart {name}: index.yaml of {repo} has no entries")
    raw = doc["entries"].get(name)
    if raw is None:
        raise SourceError(f"chart {name}: no chart named {name!r} in {repo}")
    if not isinstance(raw, list):
        raise SourceError(f"chart {name}: index.yaml of {repo}: entries.{name} is not a list")
    out: list[IndexEntry] = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("version"), (str, int, float)):
            continue
        urls = item.get("urls")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or not urls:
            continue
        digest = item.get("digest") if isinstance(item.get("digest"), str) else ""
        out.append(IndexEntry(name=name, version=str(item["version"]), urls=tuple(urls), digest=str(digest)))
    return out


def resolve(entries: list[IndexEntry], constraint: str, *, name: str, repo: str) -> IndexEntry:
    """The entry ``constraint`` picks: an exact version as is, else the highest in range."""
    constraint = constraint.strip() or "*"
    by_version = {e.version: e for e in entries}
    if semver.is_exact(constraint):
        for text in (constraint, constraint.removeprefix("v"), "v" + constraint.removeprefix("v")):
            if text in by_version:
                return by_version[text]
        # "1.2.3" also matches an index entry spelled "v1.2.3" or "1.2.3+build": fall through
    try:
        parsed = semver.parse_constraint(constraint)
    except semver.ConstraintError as e:
        raise SourceError(f"chart {name}: version {constraint!r} is not a valid constraint: {e}") from None
    best = parsed.best(by_version)
    if best is None:
        have = ", ".join(semver.newest(by_version, 5))
        raise SourceError(f"chart {name}: no version matches {constraint!r} in {repo} (newest: {have or 'none'})")
    return by_version[best]


class HelmRepository:
    """One HTTP(S) chart repository with its auth and CA; ``fetch`` returns an unpacked chart."""

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        ca_pem: str | None = None,
        cache: ChartCache | None = None,
        limits: archive.ArchiveLimits | None = None,
        transport: Transport | None = None,
    ) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise SourceError(f"helm repository {redact_url(url)}: url must be http:// or https://")
        self.url = url.rstrip("/") + "/"
        self.display = redact_url(self.url)
        self.credentials = credentials
        self.cache = cache or ChartCache()
        self.limits = limits or archive.ArchiveLimits()
        self.transport = transport or Transport(ca_pem=ca_pem)

    def _headers(self, url: str) -> dict[str, str]:
        if self.credentials and same_origin(url, self.url):
            return {"Authorization": self.credentials.header()}
        return {}

    def index(self, name: str, *, version: str = "*") -> list[IndexEntry]:
        """The chart's index entries; a 304 against the remembered index costs no body."""
        index_url = urllib.parse.urljoin(self.url, "index.yaml")
        memo = self.cache.root / "indexes" / hashlib.sha256(self.url.encode()).hexdigest()[:40]
        headers = self._headers(index_url)
        meta: dict[str, str] = {}
        if (memo / "meta.json").is_file() and (memo / "index.yaml").is_file():
            meta = json.loads((memo / "meta.json").read_text())
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last-modified"):
                headers["If-Modified-Since"] = meta["last-modified"]
        resp = self.transport.get(
            index_url,
            what=f"chart {name} (version {version!r})",
            headers=headers,
            max_bytes=MAX_INDEX_BYTES,
            ok=(200, 304),
        )
        if resp.status == 304 and meta:
            body = (memo / "index.yaml").read_bytes()
        else:
            body = resp.body
            memo.mkdir(parents=True, exist_ok=True)
            (memo / "index.yaml").write_bytes(body)
            (memo / "meta.json").write_text(
                json.dumps({k: resp.headers[k] for k in ("etag", "last-modified") if k in resp.headers})
            )
        return parse_index(body, name=name, repo=self.display)

    def fetch(self, name: str, version: str = "*") -> ChartArtifact:
        """Resolve ``version`` (exact or a Helm range) and return the unpacked chart."""
        entry = resolve(self.index(name, version=version), version, name=name, repo=self.display)
        label = f"{name}@{entry.version}"
        if not entry.digest:
            raise SourceError(f"chart {label}: {self.display} lists no digest for it; refusing an unverifiable chart")
        digest = "sha256:" + entry.digest.lower().removeprefix("sha256:")
        key = CacheKey(repository=self.display, name=name, version=entry.version, digest=digest)
        if (cached := self.cache.get(key)) is not None:
            return ChartArtifact(name=name, version=entry.version, digest=digest, path=cached, source=self.display)
        chart_url = urllib.parse.urljoin(self.url, entry.urls[0])
        resp = self.transport.get(
            chart_url,
            what=f"chart {label}",
            headers=self._headers(chart_url),
            max_bytes=self.limits.max_compressed_bytes,
        )
        got = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if got != digest:
            raise SourceError(f"chart {label}: digest mismatch: the index lists {digest}, the archive is {got}")
        path = self.cache.put(
            key,
            lambda d: archive.extract(resp.body, d, chart=name, label=label, version=entry.version, limits=self.limits),
        )
        return ChartArtifact(name=name, version=entry.version, digest=digest, path=path, source=self.display)
