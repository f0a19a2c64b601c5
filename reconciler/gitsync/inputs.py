"""What a GitSync renders from, read on its behalf: its source (with its Secret), its variables,
and the digest that tells whether any of it changed since the last full sync."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconciler.gitsync.spec import WEBHOOK_STAMP, BucketSourceSpec, GitSourceSpec, GitSyncSpec, SpecError
from reconciler.kube import paths
from reconciler.kube.client import Kube
from reconciler.report import redact
from reconciler.source import bucket as bucket_source
from reconciler.source import git as git_source
from reconciler.source import shared
from reconciler.source.artifact import Source
from reconciler.source.local import tree_digest


def describe(spec: GitSyncSpec) -> str:
    """The source as a status message names it, without credentials."""
    src = spec.source
    if isinstance(src, BucketSourceSpec):
        return f"s3://{src.bucket}/{src.prefix}"
    return f"{redact.redact_url(src.url)} ({src.ref})"


def printable_secrets(values: Iterable[bytes]) -> frozenset[str]:
    """The values of a Secret as they could appear in a message (text only, long enough to mask)."""
    out = set()
    for v in values:
        try:
            text = v.decode().strip()
        except UnicodeDecodeError:
            continue
        if len(text) >= redact.MIN_LEN:
            out.add(text)
    return frozenset(out)


def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    sec = kube.get(paths.api_path(group="", version="v1", resource="secrets", namespace=namespace, name=name))
    return {k: base64.b64decode(v) for k, v in (sec.get("data") or {}).items()}


def shared_key(src: GitSourceSpec | BucketSourceSpec, secret: dict[str, bytes] | None, *, namespace: str) -> str:
    """The key GitSyncs share a fetch by: the spec's source (location and ref), and its Secret by
    namespace, name and a digest of its content (a rotated Secret is a new key)."""
    creds = ""
    if secret is not None and src.secret_ref is not None:
        digest = hashlib.sha256(repr(sorted(secret.items())).encode()).hexdigest()
        creds = f"{namespace}/{src.secret_ref.name}:{digest}"
    kind = "bucket" if isinstance(src, BucketSourceSpec) else "git"
    ref = "" if isinstance(src, BucketSourceSpec) else repr(src.ref)
    return shared.source_key(kind=kind, location=repr(src), ref=ref, credentials=creds)


def _git_credentials(d: dict[str, bytes]) -> git_source.GitCredentials:
    """Flux's secret keys: identity, known_hosts, username, password, bearerToken, ca.crt."""

    def text(key: str) -> str | None:
        return d[key].decode() if key in d else None

    return git_source.GitCredentials(
        ssh_private_key=d.get("identity"),
        known_hosts=d.get("known_hosts"),
        username=text("username"),
        password=text("password"),
        bearer_token=text("bearerToken"),
        ca_bundle=d.get("ca.crt") or d.get("caFile"),
    )


def open_source(
    src: GitSourceSpec | BucketSourceSpec, secret: dict[str, bytes] | None, *, timeout: float, cache_dir: Path
) -> Source:
    if isinstance(src, BucketSourceSpec):
        return bucket_source.BucketSource(
            src.bucket,
            prefix=src.prefix,
            region=src.region,
            endpoint=src.endpoint,
            cache_dir=cache_dir,
            credentials=bucket_source.BucketCredentials.from_secret(secret, name=src.secret_ref.name)
            if secret is not None and src.secret_ref
            else None,
            timeout=timeout,
        )
    return git_source.GitSource(
        src.url,
        src.ref,
        cache_dir=cache_dir,
        credentials=_git_credentials(secret) if secret is not None else None,
        timeout=timeout,
    )


def _decoded(namespace: str, name: str, data: dict[str, str]) -> dict[str, str]:
    decoded = {}
    for k, v in data.items():
        try:
            decoded[k] = base64.b64decode(v).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise SpecError(f"spec.substituteFrom: Secret {namespace}/{name} key {k} is not UTF-8 text") from e
    return decoded


def variables(kube: Kube, namespace: str, spec: GitSyncSpec) -> tuple[dict[str, str], frozenset[str]]:
    """The substitution variables, and which of them came from a Secret (never shown)."""
    values: dict[str, str] = {}
    secret_names: set[str] = set()
    for vf in spec.substitute_from:
        kind = "secrets" if vf.kind == "Secret" else "configmaps"
        obj = kube.get_or_none(paths.api_path(group="", version="v1", resource=kind, namespace=namespace, name=vf.name))
        if obj is None:
            if vf.optional:
                continue
            raise SpecError(f"spec.substituteFrom: {vf.kind} {namespace}/{vf.name} not found")
        data = obj.get("data") or {}
        if vf.kind == "Secret":
            data = _decoded(namespace, vf.name, data)
            secret_names |= set(data)
        values.update(data)
    values.update(spec.substitute)  # inline values win, as in Flux
    return values, frozenset(secret_names - set(spec.substitute))


def digest(path: Path, values: dict[str, str], *, md: dict[str, Any], keys: str = "") -> str:
    """Digest of all a sync renders from: the files under its path, its variables, its spec, and
    ``keys`` (the digest of its decryption Secret, default none: a rotated key must render again).

    ``path`` is already confined to the revision; the digest streams and stops at the source caps."""
    files = tree_digest(path)
    blob = json.dumps([files, sorted(values.items()), md.get("generation"), keys], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


VERIFY_EVERY = 3600.0
"""Seconds: the longest a GitSync goes without a full plan against live state, however quiet its
watches were (the safety net under them: a kind that left discovery, an edited inventory)."""


def unchanged(
    obj: dict[str, Any],
    *,
    interval: float,
    last: tuple[str, int, float],
    inputs: str,
    handled_request: str | None,
    watched: bool = False,
) -> bool:
    """Whether this reconcile can skip the plan: nothing it renders from changed since the last
    full sync, and nothing drifted. Two triggers qualify:

    - a push to a repository shared by many GitSyncs wakes them all; those whose path did not
      change need not render and plan again;
    - an interval, when the drift watches vouch (``watched``) that every object is as the last
      sync left it: no event showed a change and no kind was relisted since (a relist may hide a
      deletion). A no-op interval then costs no request; every VERIFY_EVERY (or interval, if
      longer) a full sync runs all the same.

    A reconcile asked for by a person, by drift, or by a spec change always runs in full.
    ``last``: the inputs digest of the last full sync, the objects drifted since, and when it ran.
    """
    st = obj.get("status") or {}
    requested = bool(handled_request) and handled_request != st.get("lastHandledRequestedAt")
    last_inputs, drifted, synced_at = last
    if last_inputs != inputs or drifted:
        return False
    age = time.monotonic() - synced_at
    if requested:
        return str(handled_request).startswith(WEBHOOK_STAMP) and age < interval
    return watched and age < VERIFY_EVERY
