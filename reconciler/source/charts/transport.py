"""HTTP(S) for chart downloads: one urllib3 pool per (CA bundle), bounded reads, one-line errors.

Why urllib3: it is already installed with the Kubernetes client and boto3, verifies TLS by
default, drops ``Authorization`` on a redirect to another host, and streams, so a body is cut
off at its size limit instead of being read whole first.  Every failure becomes a
``SourceError`` naming the chart, the version (if known) and the cause; messages carry URLs
without credentials and never a response body.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

import urllib3
import urllib3.exceptions

from reconciler.source.artifact import SourceError

TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Credentials:
    """Basic-auth credentials (from a Secret's ``username``/``password``); never printed."""

    username: str = field(repr=False)
    password: str = field(repr=False)

    @classmethod
    def from_secret(cls, data: Mapping[str, str] | None) -> Credentials | None:
        """``username``/``password`` keys of a decoded Secret, as Flux reads them; None if absent."""
        if not data or not data.get("username"):
            return None
        return cls(username=data["username"], password=data.get("password", ""))

    @classmethod
    def from_docker_config(cls, data: Mapping[str, str] | None, host: str) -> Credentials | None:
        """The entry for ``host`` in a ``kubernetes.io/dockerconfigjson`` Secret (``.dockerconfigjson``).

        ``auths`` keys may be a bare host or a URL (``https://host/v1/``); ``auth`` is
        base64 ``user:password`` and wins over separate ``username``/``password`` fields.
        """
        raw = (data or {}).get(".dockerconfigjson")
        if not raw:
            return None
        try:
            auths = json.loads(raw).get("auths") or {}
        except (ValueError, AttributeError):
            raise SourceError("registry credentials: .dockerconfigjson is not valid JSON") from None
        for key, entry in auths.items() if isinstance(auths, dict) else ():
            key_host = urllib.parse.urlsplit(key if "://" in key else f"//{key}").netloc
            if key_host != host or not isinstance(entry, dict):
                continue
            if entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise SourceError(
                        f"registry credentials: the auth for {host} is not base64 user:password"
                    ) from None
                return cls(username=user, password=password)
            if entry.get("username"):
                return cls(username=str(entry["username"]), password=str(entry.get("password", "")))
        return None

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def ca_from_secret(data: Mapping[str, str] | None) -> str | None:
    """The CA bundle (PEM) of a TLS Secret: ``ca.crt`` as Flux reads it (``caFile``, its old name, too)."""
    data = data or {}
    return data.get("ca.crt") or data.get("caFile") or None


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def redact_url(url: str) -> str:
    """``url`` without user info or query (a signed URL's query is a credential too)."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    netloc = f"{host}:{p.port}" if p.port else host
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


def same_origin(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


class Transport:
    """GETs with a CA bundle (PEM text; None = the system's), a size cap and request counting."""

    def __init__(self, *, ca_pem: str | None = None, max_redirects: int = 5) -> None:
        ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
        self._pool = urllib3.PoolManager(
            ssl_context=ctx,
            timeout=TIMEOUT,
            # no retries (the controller retries a failed sync), but follow redirects (CDN-hosted charts)
            retries=urllib3.Retry(total=None, connect=0, read=0, other=0, status=0, redirect=max_redirects),
        )
        self.requests = 0  # for tests and the benchmark: how many round trips a fetch cost

    def get(
        self,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        max_bytes: int,
        ok: tuple[int, ...] = (200,),
    ) -> Response:
        """GET ``url``; statuses outside ``ok`` become a SourceError (401/403/404/5xx worded apart)."""
        self.requests += 1
        try:
            resp = self._pool.request("GET", url, headers=dict(headers or {}), preload_content=False, redirect=True)
        except urllib3.exceptions.SSLError as e:
            raise SourceError(f"{what}: TLS verification failed for {redact_url(url)}: {_ssl_reason(e)}") from None
        except urllib3.exceptions.MaxRetryError as e:
            if isinstance(e.reason, urllib3.exceptions.SSLError):
                raise SourceError(
                    f"{what}: TLS verification failed for {redact_url(url)}: {_ssl_reason(e.reason)}"
                ) from None
            raise SourceError(f"{what}: cannot reach {redact_url(url)}: {type(e.reason).__name__}") from None
        except urllib3.exceptions.HTTPError as e:
            raise SourceError(f"{what}: request to {redact_url(url)} failed: {type(e).__name__}") from None
        try:
            if resp.status not in ok:
                raise status_error(resp.status, what=what, url=url)
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise SourceError(f"{what}: {redact_url(url)} is {declared} bytes, over the limit of {max_bytes}")
            chunks: list[bytes] = []
            size = 0
            for chunk in resp.stream(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise SourceError(f"{what}: {redact_url(url)} is over the limit of {max_bytes} bytes")
                chunks.append(chunk)
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, b"".join(chunks))
        except urllib3.exceptions.HTTPError as e:
            raise SourceError(f"{what}: reading {redact_url(url)} failed: {type(e).__name__}") from None
        finally:
            resp.release_conn()


def status_error(status: int, *, what: str, url: str) -> SourceError:
    where = redact_url(url)
    if status in (401, 403):
        why = f"authentication failed (HTTP {status}) at {where}: check the credentials Secret"
    elif status == 404:
        why = f"not found (HTTP 404) at {where}"
    elif status >= 500:
        why = f"server error (HTTP {status}) at {where}"
    else:
        why = f"unexpected HTTP {status} from {where}"
    return SourceError(f"{what}: {why}")


def _ssl_reason(e: BaseException) -> str:
    text = str(e)
    if m := re.search(r"certificate verify failed: ([^(]+)", text):
        return f"certificate verify failed ({m.group(1).strip()})"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "certificate verify failed"
    return text.split("\n", 1)[0][:300]
