"""Follow the objects under a prefix of an S3 (or S3-compatible) bucket and hand out their files.

Keys keep their full names in the artifact, as in Flux's Bucket source: ``prefix`` only filters
what is listed, so ``path`` in the GitSync is written the same whether a prefix is set or not.

A bucket has no commit to name a state, so the revision is a digest of every (key, ETag) pair:
listing is enough to tell whether anything changed, and an object whose ETag is already cached
is not downloaded again. Each fetch builds a new snapshot from the cache and swaps it in only
once complete, so a failed listing or download leaves the previous artifact in place and the
controller neither applies nor prunes anything for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions

from reconciler.report import redact
from reconciler.source import limits, lock, snapshot
from reconciler.source.artifact import Artifact, SourceError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


@dataclass(frozen=True)
class BucketLimits:
    """Everything under the prefix is downloaded, not only what ``path`` renders, so the listing
    is checked against these before the first byte: a stray backup or a hostile endpoint must
    not fill the controller's cache volume, which every GitSync shares.  Well above what a
    manifest tree needs (rendering stops at 4 MiB a file, 64 MiB a revision).  The same numbers as
    a git export's (``limits.TreeLimits``), so a revision is bounded alike whatever its source."""

    max_object_bytes: int = limits.DEFAULT.max_file_bytes  # bytes of one object; default 64 MiB (as a git file)
    max_total_bytes: int = limits.DEFAULT.max_total_bytes  # bytes under the prefix; default 1 GiB
    max_objects: int = limits.DEFAULT.max_files  # objects under the prefix; default 50,000


@dataclass(frozen=True)
class BucketCredentials:
    """Static keys from a Secret (Flux's ``accesskey``/``secretkey``); without them boto3's own
    chain applies: environment, IRSA web identity, instance or container role."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret(cls, data: Mapping[str, bytes], *, name: str) -> BucketCredentials:
        missing = [k for k in ("accesskey", "secretkey") if not data.get(k)]
        if missing:
            raise ValueError(f"Secret {name} has no {' or '.join(missing)} key")
        token = data.get("sessiontoken")
        return cls(data["accesskey"].decode(), data["secretkey"].decode(), token.decode() if token else None)


def revision(listing: Mapping[str, str]) -> str:
    """``sha256:<hex>`` over the sorted (key, ETag) pairs: any added, removed or rewritten object
    changes it, and an unchanged bucket keeps it without a single download."""
    h = hashlib.sha256()
    for key in sorted(listing):
        h.update(key.encode() + b"\0" + listing[key].encode() + b"\n")
    return "sha256:" + h.hexdigest()


def cache_name(key: str, etag: str) -> str:
    """The cache file of one object version: a changed object gets a new name, never an overwrite."""
    return hashlib.sha256(f"{key}\0{etag}".encode()).hexdigest()


class BucketSource:
    """One followed (bucket, prefix), owned by one worker; like the git source, fetch() and
    close() are serialised so a shutdown path may close it from another thread."""

    def __init__(
        self,
        bucket: str,
        *,
        cache_dir: Path,
        prefix: str = "",
        region: str | None = None,
        endpoint: str | None = None,
        credentials: BucketCredentials | None = None,
        timeout: float = 60.0,
        limits: BucketLimits = BucketLimits(),
    ) -> None:
        self._bucket, self._prefix, self._region, self._endpoint = bucket, prefix, region, endpoint
        self._limits = limits
        self._creds = credentials
        self._timeout = timeout
        key = hashlib.sha256(f"{endpoint or ''}\n{region or ''}\n{bucket}\n{prefix}".encode()).hexdigest()[:24]
        self._dir = Path(cache_dir) / "bucket" / key
        self._client: S3Client | None = None
        self._handed = snapshot.Handed()
        self._mutex = threading.Lock()
        self.downloaded = 0  # objects downloaded by the last fetch (0 when nothing changed)
        self._sizes: dict[str, int] = {}  # listed size of each key, the most a download may write

    def __repr__(self) -> str:
        return f"BucketSource({self._display})"

    @property
    def _display(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}"

    def fetch(self) -> Artifact:
        """List the prefix, download what changed and return the files; on any failure raise
        SourceError and leave the previously returned Artifact untouched."""
        with self._mutex:
            try:
                return self._fetch()
            except snapshot.UnsafeTreeError as e:
                raise self._error(f"refusing the listing: {e}") from None
            except TimeoutError as e:
                raise self._error(f"timed out after {self._timeout:g}s waiting for the cache lock: {e}") from None
            except _CallError as e:
                raise self._error(f"{e.call}: {self._describe(e.cause)}") from None
            except (botocore.exceptions.BotoCoreError, OSError, ValueError) as e:
                raise self._error(self._describe(e)) from None

    def close(self) -> None:
        """Remove the snapshot handed out last; the object cache stays for the next process."""
        with self._mutex:
            self._handed.release()
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> BucketSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _error(self, reason: str) -> SourceError:
        where = (
            f"endpoint {redact.redact_url(self._endpoint)}" if self._endpoint else f"region {self._region or 'default'}"
        )
        return SourceError(reason, url=self._display, ref=where)

    def _describe(self, e: BaseException) -> str:
        """One line without secrets: AWS's error code and message, or botocore's own text."""
        if isinstance(e, botocore.exceptions.ClientError):
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            text = f"{err.get('Code') or status}: {err.get('Message') or 'no message'}"
        else:
            text = f"{type(e).__name__}: {e}"
        creds = self._creds
        secrets = (creds.access_key, creds.secret_key, creds.session_token) if creds else ()
        return redact.scrub(redact.scrub_urls(text), secrets)

    def _s3(self) -> S3Client:
        """A client from a Session of this source's own: boto3 Sessions are not thread-safe and the
        default one is shared, while each worker owns its source (boto/botocore#2985)."""
        if self._client is None:
            creds = self._creds
            session = boto3.session.Session(
                aws_access_key_id=creds.access_key if creds else None,
                aws_secret_access_key=creds.secret_key if creds else None,
                aws_session_token=creds.session_token if creds else None,
            )
            config = botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": 3},  # the first try and two retries
                connect_timeout=min(self._timeout, 10.0),
                read_timeout=self._timeout,
            )
            self._client = session.client("s3", region_name=self._region, endpoint_url=self._endpoint, config=config)
        return self._client

    def _fetch(self) -> Artifact:
        deadline = time.monotonic() + self._timeout
        self.downloaded = 0
        self._dir.mkdir(parents=True, exist_ok=True)
        with lock.exclusive(self._dir / "lock", deadline=deadline):
            listing = self._list()
            for key in listing:
                snapshot.safe_parts(key)  # before anything is written: one bad key refuses the revision
            rev = revision(listing)
            if (same := self._handed.same(rev)) is not None:
                return same
            objects = self._dir / "objects"
            objects.mkdir(exist_ok=True)
            for key, etag in listing.items():
                if not (objects / cache_name(key, etag)).is_file():
                    self._download(key, etag, objects / cache_name(key, etag))
                    self.downloaded += 1
            snapshot.collect(self._dir / "snapshots")
            snap = snapshot.allocate(self._dir / "snapshots", rev.removeprefix("sha256:")[:12])
            try:
                _link_tree(objects, listing, snap.path)
            except BaseException:
                snap.release()
                raise
            _forget(objects, keep={cache_name(k, e) for k, e in listing.items()})
            artifact = self._handed.hand_out(snap, revision=rev)
        log.info("fetched %s: %s (%d objects, %d downloaded)", self._display, rev, len(listing), self.downloaded)
        return artifact

    def _list(self) -> dict[str, str]:
        """Every object key under the prefix with its ETag; "folder" markers (keys ending in /) are
        what consoles create for empty folders and hold no file.  A listing that is cut short or
        over the limits is refused whole: acting on part of a prefix would prune the rest."""
        listing: dict[str, str] = {}
        self._sizes = {}
        total = 0
        try:
            pages = self._s3().get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key, size = obj["Key"], int(obj.get("Size", 0))
                    if key.endswith("/"):
                        continue
                    if size > self._limits.max_object_bytes:
                        raise self._error(f"ListObjectsV2: {key} is {size} bytes, over {self._limits.max_object_bytes}")
                    listing[key], self._sizes[key] = obj["ETag"], size
                    total += size
                if len(listing) > self._limits.max_objects or total > self._limits.max_total_bytes:
                    raise self._error(
                        f"ListObjectsV2: the prefix holds more than {self._limits.max_objects} objects or "
                        f"{self._limits.max_total_bytes} bytes"
                    )
                if page.get("IsTruncated") and not page.get("NextContinuationToken"):
                    # botocore's paginator just stops here; an endpoint answering in the V1 format
                    # (NextMarker) would hand us the first page as if it were everything.
                    raise self._error(
                        "ListObjectsV2: the listing is truncated but has no continuation token "
                        "(does the endpoint implement ListObjectsV2?)"
                    )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise _CallError("ListObjectsV2", e) from None
        return listing

    def _download(self, key: str, etag: str, dest: Path) -> None:
        """Fetch the object version that was listed (If-Match), into a temporary name renamed only
        when complete, so the cache never holds a truncated file under a valid name."""
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            resp = self._s3().get_object(Bucket=self._bucket, Key=key, IfMatch=etag)
            listed = self._sizes.get(key, 0)
            written = 0
            with tmp.open("wb") as f:
                for chunk in resp["Body"].iter_chunks(_CHUNK):
                    written += len(chunk)
                    if written > listed:  # the endpoint sends more than it listed: stop, don't fill the disk
                        raise self._error(f"GetObject {key}: more than the {listed} bytes listed")
                    f.write(chunk)
            tmp.rename(dest)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise _CallError(f"GetObject {key}", e) from None
        finally:
            tmp.unlink(missing_ok=True)


class _CallError(Exception):
    """An AWS call failed; carries its name so the one-line message says which call."""

    def __init__(self, call: str, cause: Exception) -> None:
        super().__init__(call)
        self.call, self.cause = call, cause


def _link_tree(objects: Path, listing: Mapping[str, str], dest: Path) -> None:
    """Hard-link each cached object to its key's path: no copy, and the snapshot stays intact when
    the cache entry is later removed."""
    for key, etag in listing.items():
        target = dest.joinpath(*snapshot.safe_parts(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(objects / cache_name(key, etag), target, follow_symlinks=False)


def _forget(objects: Path, *, keep: Iterable[str]) -> None:
    """Drop cached object versions the current listing no longer has, so the cache stays the size
    of the prefix rather than of its whole history."""
    wanted = set(keep)
    for entry in objects.iterdir():
        if entry.name not in wanted and not entry.name.startswith("."):
            entry.unlink(missing_ok=True)
