"""Last line of defence against Secret values in messages.

Diffs are masked at the source (``diffing``), but error text comes from elsewhere too —
the API server may quote a rejected value, kustomize may echo a line. Every message a
sync prints or records passes through :func:`scrub` with the values of the Secrets it
handles, in plain and base64 form. Values shorter than 4 characters are left alone:
scrubbing "1" or "on" would garble every message while hiding nothing worth hiding.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterable

from reconciler.render.manifests import Manifest

MASK = "***"
MIN_LEN = 4


def secret_values(manifests: Iterable[Manifest]) -> frozenset[str]:
    out: set[str] = set()
    for m in manifests:
        obj = m.obj
        if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
            continue
        for v in (obj.get("data") or {}).values():
            if v is None:
                continue
            s = str(v)
            out.add(s)
            # YAML block scalars and pasted `base64` output wrap lines; the API server drops
            # the line breaks, so collect the unwrapped form too.
            flat = "".join(s.split())
            with contextlib.suppress(binascii.Error, UnicodeDecodeError, ValueError):
                out.add(base64.b64decode(flat, validate=True).decode("utf-8"))
                out.add(flat)
        for v in (obj.get("stringData") or {}).values():
            if v is None:
                continue
            s = str(v)
            out.add(s)
            out.add(base64.b64encode(s.encode()).decode())
    return frozenset(v for v in out if len(v) >= MIN_LEN)


def scrub(message: str, values: Iterable[str]) -> str:
    for v in sorted(values, key=len, reverse=True):  # longest first: a value may contain another
        message = message.replace(v, MASK)
    return message
