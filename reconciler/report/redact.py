"""Keep credentials and Secret values out of everything we print or record.

One module for every message that leaves the process (log lines, Events, status
messages, diffs, CLI output), because there used to be three slightly different ones and
a fix to one never reached the others. It lives in ``report``, the lowest middle layer,
so that source, render, sync, gitsync and the CLI can all use it.

Three kinds of secret reach messages:

- credentials in URLs: users paste ``https://x-access-token:...@host/...``; git and HTTP
  libraries echo them back (:func:`redact_url`, :func:`scrub_urls`);
- values of the Secret manifests a sync handles, in plain and base64 form
  (:func:`secret_values`), which the API server or a tool may quote in an error;
- any other known secret (a token, a substitution variable marked secret).

:func:`scrub` masks known values in text. Collected Secret values shorter than
:data:`MIN_LEN` are left out: masking "1" or "on" would garble every message while
hiding nothing worth hiding. Values of one or two characters passed in directly are
masked only as whole tokens, for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any, Protocol

MASK = "***"
MIN_LEN = 4  # shortest Secret value collected by secret_values
_WHOLE_TOKEN_BELOW = 3  # values shorter than this are masked only where they stand alone

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")


class HasObject(Protocol):
    """Anything that carries one Kubernetes object (a rendered ``Manifest``)."""

    @property
    def obj(self) -> dict[str, Any]: ...


def redact_url(url: str) -> str:
    """The URL without any ``user:password@`` of a scheme URL (ssh users are kept: not secret)."""
    parts = urllib.parse.urlsplit(url) if "://" in url else None
    if parts is not None and parts.scheme.lower() in _SSH_SCHEMES and parts.password is None:
        return url
    return _USERINFO.sub(r"\g<scheme>", url)


def scrub_urls(text: str) -> str:
    """Replace the userinfo of every scheme URL in ``text`` (git's stderr, exception text) with ``***@``."""
    return _USERINFO.sub(rf"\g<scheme>{MASK}@", text)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every known secret value replaced by :data:`MASK`.

    Longer values first, so a value that contains another is hidden whole. Empty values
    are ignored; values of one or two characters are only replaced as whole tokens:
    replacing every "1" in "line 12" would make messages unreadable while hiding nothing a
    reader could not guess.
    """
    for value in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(value) >= _WHOLE_TOKEN_BELOW:
            text = text.replace(value, MASK)
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", MASK, text)
    return text


def secret_values(manifests: Iterable[HasObject]) -> frozenset[str]:
    """Every value of the ``v1`` Secrets among ``manifests``, plain and base64, at least :data:`MIN_LEN` long."""
    out: set[str] = set()
    for m in manifests:
        obj = m.obj
        if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
            continue
        for v in (obj.get("data") or {}).values():
            if v is not None:
                out |= _data_forms(str(v))
        for v in (obj.get("stringData") or {}).values():
            if v is not None:
                s = str(v)
                out |= {s, base64.b64encode(s.encode()).decode()}
    return frozenset(v for v in out if len(v) >= MIN_LEN)


def _data_forms(s: str) -> set[str]:
    """A ``data`` value as written, unwrapped, and decoded (when it is valid base64 of UTF-8 text)."""
    out = {s}
    # YAML block scalars and pasted `base64` output wrap lines; the API server drops the
    # line breaks, so collect the unwrapped form too.
    flat = "".join(s.split())
    with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
        out.add(base64.b64decode(flat, validate=True).decode("utf-8"))
        out.add(flat)
    return out
