"""Recognising SOPS files, refusing half-encrypted ones, and knowing what their plaintext holds.

A file is SOPS-encrypted when it carries sops's metadata with a MAC, in the shape of the store its
name selects (sops picks the store by extension, and so do we): a ``sops`` mapping with ``mac``
in a YAML document or a JSON object (binary files are stored as JSON ``{"data": ..., "sops": ...}``),
``sops_mac=`` in a dotenv file, a ``[sops]`` section with ``mac`` in an INI file.  Without the MAC
sops would refuse the file anyway, and a file that merely mentions "sops" is not ours to touch.

The integrity rule added on top of sops's own (sops checks the MAC over every value and refuses a
value that should be encrypted but is not): in a SOPS-encrypted Kubernetes Secret every value of
``data`` and ``stringData`` must be an ``ENC[...]`` value, whatever ``encrypted_regex`` or
``unencrypted_suffix`` the file was encrypted with.  A Secret value left in clear inside an
"encrypted" file is exactly the mistake that leaks a password into git, and it is named (by key
path, never by value) rather than applied.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from reconciler.render import yaml_safe
from reconciler.render.decryption import DecryptionError, file_format
from reconciler.render.options import Limits
from reconciler.render.sops_tool import Format

_ENC = re.compile(r"^ENC\[[A-Z0-9_]+,data:")
_DOTENV_MAC = re.compile(rb"^sops_mac=", re.MULTILINE)
_INI_MAC = re.compile(rb"^\[sops\][^\[]*^mac\s*=", re.MULTILINE | re.DOTALL)


def _has_mac(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("sops"), dict) and "mac" in doc["sops"]


def encrypted_documents(data: bytes, *, file: str, limits: Limits) -> list[Any] | None:
    """The parsed documents of ``data`` if it is a SOPS file (``[]`` for dotenv/INI), else None."""
    if b"sops" not in data:
        return None
    fmt = file_format(file)
    if fmt is Format.DOTENV:
        return [] if _DOTENV_MAC.search(data) else None
    if fmt is Format.INI:
        return [] if _INI_MAC.search(data) else None
    try:
        text = data.decode("utf-8")
        if fmt is Format.YAML:
            docs = yaml_safe.load_all(text, max_aliases=limits.max_aliases, max_nodes=limits.max_file_bytes)
        else:
            docs = [json.loads(text)]
    except (UnicodeDecodeError, ValueError, yaml.YAMLError, yaml_safe.YAMLLimitError, RecursionError):
        return None  # not sops's store: left to the loader (or kustomize) to judge
    return docs if any(_has_mac(d) for d in docs) else None


def check_fully_encrypted(docs: list[Any], *, plain: bytes, file: str, data: bytes = b"") -> None:
    """DecryptionError naming the key path of a Secret value left in clear in a SOPS file.

    ``docs`` are the encrypted documents, ``plain`` the file's plaintext: whether a document is a
    Secret is read from the plaintext, because without ``encrypted_regex`` sops encrypts ``kind`` too.
    ``data`` is the ciphertext (default empty: not checked), read for dotenv files.
    """
    fmt = file_format(file)
    if fmt is Format.DOTENV:
        _check_dotenv(data, file=file)
        return
    if fmt not in (Format.YAML, Format.JSON):
        return
    plain_docs = _documents(plain)
    for n, (enc, dec) in enumerate(zip(docs, plain_docs, strict=False), start=1):
        if not (isinstance(enc, dict) and isinstance(dec, dict) and dec.get("kind") == "Secret"):
            continue
        for field in ("data", "stringData"):
            values = enc.get(field)
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                if not (isinstance(value, str) and _ENC.match(value)):
                    where = f"{field}.{key}" + (f" (document {n})" if len(docs) > 1 else "")
                    raise DecryptionError(
                        file=file,
                        key_path=where,
                        reason="the value is not encrypted, though the file is SOPS-encrypted: a Secret's data and "
                        "stringData must be encrypted in full (check encrypted_regex/unencrypted_suffix in .sops.yaml)",
                    )


def _check_dotenv(data: bytes, *, file: str) -> None:
    """Every value of a SOPS dotenv file is encrypted: such a file feeds a ``secretGenerator``, and a
    ``.sops.yaml`` rule with ``encrypted_regex`` (written for manifests) leaves its values in clear,
    which sops accepts silently. Named by key, never by value."""
    for line in data.splitlines():
        key, sep, value = line.strip().partition(b"=")
        if not sep or not key or not value or key.startswith((b"#", b"sops_")):
            continue  # an empty value stays empty in sops's output: nothing to hide
        if not _ENC.match(value.decode("utf-8", "replace")):
            raise DecryptionError(
                file=file,
                key_path=key.decode("utf-8", "replace"),
                reason="the value is not encrypted, though the file is SOPS-encrypted: every value of a dotenv "
                "file must be encrypted (give .env files a .sops.yaml rule without encrypted_regex/unencrypted_suffix)",
            )


def plaintext_values(plain: bytes, *, file: str, whole: bool) -> Iterator[bytes]:
    """What a Secret built from this decrypted file can hold: the whole file (``whole``: a generator's
    ``files`` entry), each value of a dotenv file, or the data/stringData values of Secrets in it."""
    if whole:
        yield plain
        return
    fmt = file_format(file)
    if fmt is Format.DOTENV:
        for line in plain.splitlines():
            key, sep, value = line.partition(b"=")
            if sep and key.strip() and not key.lstrip().startswith(b"#"):
                yield value
        return
    if fmt in (Format.YAML, Format.JSON):
        yield from _secret_values(plain)


def _documents(plain: bytes) -> list[Any]:
    """The documents of a decrypted YAML or JSON file (JSON is YAML here); [] if it does not parse."""
    try:
        return yaml_safe.load_all(plain.decode("utf-8"), max_aliases=100, max_nodes=len(plain) + 1024)
    except (UnicodeDecodeError, yaml.YAMLError, yaml_safe.YAMLLimitError, RecursionError):
        return []


def _secret_values(plain: bytes) -> Iterator[bytes]:
    for doc in _documents(plain):
        if not isinstance(doc, dict):
            continue
        yield from secret_values(doc)


def secret_values(obj: dict[str, Any]) -> Iterator[bytes]:
    """The values of a Secret object as bytes (``data`` decoded from base64); nothing for other kinds."""
    if obj.get("kind") != "Secret":
        return
    for value in (obj.get("stringData") or {}).values() if isinstance(obj.get("stringData"), dict) else ():
        yield str(value).encode("utf-8")
    for value in (obj.get("data") or {}).values() if isinstance(obj.get("data"), dict) else ():
        try:
            yield base64.b64decode("".join(str(value).split()), validate=True)  # kustomize wraps long values
        except (binascii.Error, ValueError):
            yield str(value).encode("utf-8")
