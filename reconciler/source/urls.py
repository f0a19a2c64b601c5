"""Recognise the git URL forms we accept, lifting credentials out of them.

Users paste URLs with tokens in them (``https://x-access-token:...@host/...``); such a URL must
never reach a log line, an Event, a status message or a process's argument list: :func:`parse`
moves the credentials out, and :mod:`reconciler.report.redact` hides them in messages.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from reconciler.report.redact import redact_url

Transport = Literal["file", "ssh", "https", "http"]

# user@host:path (git's "scp-like" syntax); no scheme, and the part before ':' has no '/'.
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[^@/:\s\[\]]+|\[[^\]\s]+\]):(?P<path>(?!//).+)$")


@dataclass(frozen=True)
class GitURL:
    """A parsed remote: ``url`` is what git is given (credentials removed); ``username`` and
    ``password`` were lifted out of an https URL so they can travel in a header instead."""

    url: str
    transport: Transport
    host: str
    username: str | None = None
    password: str | None = None


def parse(url: str) -> GitURL:
    """Classify ``url``; raises ValueError for forms we do not fetch from (``ext::``, bare paths...)."""
    if not url or url != url.strip() or url.startswith("-") or any(ord(c) < 0x20 for c in url):
        raise ValueError(f"url: {redact_url(url)!r} is not a valid git URL")
    if "://" not in url:
        m = _SCP_LIKE.match(url)
        if not m or m["path"].startswith(":"):  # "<helper>::<address>" would run a remote helper
            raise ValueError(f"url: {redact_url(url)!r}: use file://, ssh://, user@host:path or https://")
        return GitURL(url=url, transport="ssh", host=m["host"].strip("[]"))
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"url: {url!r}: a file:// URL needs an absolute local path")
        return GitURL(url=url, transport="file", host="")
    if scheme in ("ssh", "git+ssh", "ssh+git"):
        if not parts.hostname or parts.password is not None:
            raise ValueError(f"url: {redact_url(url)!r}: an ssh:// URL needs a host and no password")
        return GitURL(url=url, transport="ssh", host=parts.hostname)
    if scheme in ("https", "http"):
        if not parts.hostname:
            raise ValueError(f"url: {redact_url(url)!r}: no host")
        clean = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return GitURL(
            url=clean,
            transport="https" if scheme == "https" else "http",
            host=parts.hostname,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        )
    raise ValueError(f"url: {redact_url(url)!r}: unsupported scheme {scheme!r} (file, ssh, https, http)")
