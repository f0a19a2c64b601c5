"""The keys a GitSync's ``spec.decryption`` decrypts with, read on its behalf.

Flux's Secret layout, so a repository and its key Secret move between Flux and us unchanged:
every ``*.agekey`` entry holds age identities (one per line, ``#`` comments allowed), and
``sops.aws-kms`` holds YAML with ``aws_access_key_id``, ``aws_secret_access_key`` and an
optional ``aws_session_token``. Without a secretRef the controller's own keys decrypt: its AWS
credential chain (IRSA) and ``SOPS_AGE_KEY`` from its environment.

Every error names the Secret and the entry, never a value: the message reaches status and
Events, which tenants and dashboards read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from reconciler.gitsync import inputs
from reconciler.gitsync.spec import DecryptionSpec, SpecError
from reconciler.kube.client import Kube, KubeError
from reconciler.render.decryption import AwsKmsCredentials, DecryptionKeys

AGE_SUFFIX = ".agekey"
AWS_KMS_ENTRY = "sops.aws-kms"
_AGE_PREFIX = "AGE-SECRET-KEY-1"


@dataclass(frozen=True)
class Keys:
    """What one reconcile decrypts with, and what must never be printed."""

    keys: DecryptionKeys  # handed to the render
    digest: str  # of the key Secret's content ("" for the controller's own keys): a rotation re-renders
    secrets: frozenset[str]  # key material, scrubbed from every message as a last line of defence


def read(reader: Kube, namespace: str, *, decryption: DecryptionSpec, own_aws: bool = True) -> Keys:
    """The keys of ``decryption``: its Secret's (in ``namespace``, read through the GitSync's own
    identity), or the controller's own. ``own_aws`` (default True): a Secret without ``sops.aws-kms``
    reaches KMS as the controller; False (a tenant under the lock-down): with no AWS identity.
    Raises SpecError naming the field, the Secret and the entry."""
    ref = decryption.secret_ref
    if ref is None:
        return own_keys(os.environ)
    try:
        data = inputs.secret_data(reader, namespace, ref.name)
    except KubeError as e:
        if e.not_found:
            raise SpecError(f"spec.decryption.secretRef: Secret {namespace}/{ref.name} not found") from None
        raise
    return from_secret(data, where=f"spec.decryption.secretRef: Secret {namespace}/{ref.name}", own_aws=own_aws)


def own_keys(environ: Mapping[str, str]) -> Keys:
    """The controller's keys: ``SOPS_AGE_KEY`` (identities, as sops reads it) and its AWS chain."""
    text = environ.get("SOPS_AGE_KEY", "")
    identities = _age_identities(text, where="the controller's SOPS_AGE_KEY") if text.strip() else ()
    return Keys(DecryptionKeys(age_identities=identities, aws_kms=None), digest="", secrets=frozenset(identities))


def from_secret(data: Mapping[str, bytes], *, where: str, own_aws: bool = True) -> Keys:
    """Keys from the entries of a Secret (see the module docstring)."""
    identities: list[str] = []
    for entry in sorted(k for k in data if k.endswith(AGE_SUFFIX)):
        identities.extend(_age_identities(_text(data[entry], f"{where} entry {entry}"), where=f"{where} entry {entry}"))
    kms = _aws_kms(data[AWS_KMS_ENTRY], where=f"{where} entry {AWS_KMS_ENTRY}") if AWS_KMS_ENTRY in data else None
    if not identities and kms is None:
        raise SpecError(
            f"{where} holds no decryption key (expected *{AGE_SUFFIX} entries with age identities or a "
            f"{AWS_KMS_ENTRY} entry; OpenPGP *.asc keys are not supported, see docs/sops.md)"
        )
    digest = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()
    secrets = set(identities)
    if kms is not None:
        secrets |= {v for v in (kms.access_key_id, kms.secret_access_key, kms.session_token) if v}
    keys = DecryptionKeys(age_identities=tuple(identities), aws_kms=kms, aws_ambient=own_aws)
    return Keys(keys, digest=digest, secrets=frozenset(secrets))


def _text(value: bytes, where: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise SpecError(f"{where}: not UTF-8 text") from None


def _age_identities(text: str, *, where: str) -> tuple[str, ...]:
    """The identity lines of an age key file (age-keygen writes two comment lines first)."""
    lines = [line.strip() for line in text.splitlines()]
    identities = tuple(line for line in lines if line and not line.startswith("#"))
    if not identities:
        raise SpecError(f"{where}: holds no age identity")
    if any(not i.startswith(_AGE_PREFIX) for i in identities):
        raise SpecError(f"{where}: a line is not an age identity (expected lines starting with {_AGE_PREFIX})")
    return identities


def _aws_kms(value: bytes, *, where: str) -> AwsKmsCredentials:
    try:
        doc = yaml.safe_load(_text(value, where))
    except yaml.YAMLError:
        raise SpecError(f"{where}: not YAML (expected aws_access_key_id, aws_secret_access_key)") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: expected a YAML mapping with aws_access_key_id and aws_secret_access_key")
    fields = {}
    for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"):
        v = doc.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise SpecError(f"{where}: {key} must be a non-empty string")
        fields[key] = v
    for key in ("aws_access_key_id", "aws_secret_access_key"):
        if fields[key] is None:
            raise SpecError(f"{where}: {key} is required")
    return AwsKmsCredentials(
        access_key_id=str(fields["aws_access_key_id"]),
        secret_access_key=str(fields["aws_secret_access_key"]),
        session_token=fields["aws_session_token"],
    )
