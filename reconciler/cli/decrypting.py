"""``--decrypt`` and its key flags for ``render``, ``diff`` and ``sync``: SOPS files decrypted as a GitSync's are.

Keys come from where sops users already keep them, so a repository that ``sops -d`` can read
renders with ``--decrypt`` and nothing else: age identities from ``--age-key-file`` (repeatable),
``$SOPS_AGE_KEY_FILE`` and ``$SOPS_AGE_KEY``; AWS KMS through the normal AWS chain
(``AWS_PROFILE``, ``AWS_*`` variables, SSO, IRSA).  A key file that cannot be read, or that holds
anything but age identities and comments, stops the command with exit 2 naming the file and the
line number (never the line: it may be a key).

What is printed stays masked: ``diff`` masks every Secret value (as always); ``render --decrypt``
prints decrypted Secrets with ``***`` for each value unless ``--show-secrets`` is given, because
render output tends to end up in CI logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from reconciler.render.decryption import Decryption, DecryptionKeys, shared_decryptor
from reconciler.render.manifests import Manifest
from reconciler.report import redact
from reconciler.sync import diffing

_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"


def decrypt_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--age-key-file",
        "age_key_files",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PATH",
        help="With --decrypt: a file of age identities, as age-keygen writes it (repeatable). "
        "$SOPS_AGE_KEY_FILE and $SOPS_AGE_KEY are read too.",
    )(f)
    return click.option(
        "--decrypt",
        is_flag=True,
        help="Decrypt SOPS-encrypted files (age: --age-key-file, $SOPS_AGE_KEY_FILE, $SOPS_AGE_KEY; "
        "AWS KMS: the AWS environment), as a GitSync with spec.decryption does.",
    )(f)


def identities(text: str, *, source: str, flag: str) -> list[str]:
    """The age identities of a key file's text; BadParameter naming ``source`` and the bad line's number."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(_IDENTITY_PREFIX):
            raise click.BadParameter(
                f"{source}: line {n} is not an age identity (expected {_IDENTITY_PREFIX}... or a # comment)",
                param_hint=flag,
            )
        out.append(line)
    return out


def _read(path: Path, flag: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise click.BadParameter(f"{path}: cannot read it: {why}", param_hint=flag) from None
    found = identities(text, source=str(path), flag=flag)
    if not found:
        raise click.BadParameter(f"{path}: holds no age identity ({_IDENTITY_PREFIX}...)", param_hint=flag)
    return found


def decryption(kw: dict[str, Any]) -> Decryption | None:
    """The Decryption the flags ask for (None without ``--decrypt``); BadParameter (exit 2) on a bad key file."""
    if not kw.get("decrypt"):
        if kw.get("age_key_files"):
            raise click.UsageError("--age-key-file needs --decrypt")
        return None
    found: list[str] = []
    for path in kw.get("age_key_files") or ():
        found += _read(path, "--age-key-file")
    if env_file := os.environ.get("SOPS_AGE_KEY_FILE"):
        found += _read(Path(env_file), "SOPS_AGE_KEY_FILE")
    if env_keys := os.environ.get("SOPS_AGE_KEY"):
        found += identities(env_keys, source="$SOPS_AGE_KEY", flag="SOPS_AGE_KEY")
    keys = DecryptionKeys(age_identities=tuple(dict.fromkeys(found)))
    return Decryption(keys=keys, decryptor=shared_decryptor())


def decrypted_values(manifests: Iterable[Manifest]) -> frozenset[str]:
    """Values of decrypted objects that are not Secrets (a SOPS-encrypted ConfigMap): masked in output too."""
    out: set[str] = set()
    for m in manifests:
        if not m.decrypted or m.obj.get("kind") == "Secret":
            continue
        for field in ("data", "binaryData", "stringData"):
            values = m.obj.get(field)
            if isinstance(values, dict):
                out |= {str(v) for v in values.values() if v is not None and len(str(v)) >= redact.MIN_LEN}
    return frozenset(out)


def for_display(manifests: list[Manifest], *, show_secrets: bool) -> list[dict[str, Any]]:
    """The objects ``render`` prints: decrypted ones masked unless ``show_secrets``."""
    if show_secrets:
        return [m.obj for m in manifests]
    return [diffing.mask_secret(m.obj) if m.decrypted else m.obj for m in manifests]
