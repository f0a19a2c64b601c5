"""The two places rendering meets SOPS: a manifest file of a plain folder, and a kustomization's closure.

* A plain folder's file is decrypted in memory (ciphertext bytes in, plaintext bytes out of
  sops's stdout) and loaded from those bytes; nothing is written anywhere.
* A kustomization is built from its files, so when any file of its closure (resources, patches,
  ``secretGenerator``/``configMapGenerator`` ``files`` and ``envs``, ...) is SOPS-encrypted, the
  build runs on a private copy of the closure on a memory file system with those files decrypted
  (see :mod:`decrypt_tree` for where, and why that and not something else), removed right after.
  Objects of the output are marked ``decrypted`` when they are Secrets every value of which came
  out of a decrypted file, so the plain-secrets policy can tell them from Secrets in clear.

Without a ``Decryption`` (no ``spec.decryption``, no ``--decrypt``) an encrypted file is an error
naming it: applying ``ENC[...]`` strings as a Secret's values would break the workload silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.render import decrypt_tree, kustomize, sops_files
from reconciler.render.decryption import Decryption, DecryptionError
from reconciler.render.errors import ManifestError, RenderError
from reconciler.render.manifests import Manifest, decode_text, load_text
from reconciler.render.options import Limits

_MIN_SCRUB = 4  # shorter plaintext values would scrub ordinary words out of kustomize's messages


def not_configured(file: str) -> RenderError:
    return RenderError(
        file,
        None,
        "the file is SOPS-encrypted but decryption is not configured (set spec.decryption on the GitSync, "
        "or pass --decrypt to the command)",
    )


Predecrypted = dict[str, bytes | DecryptionError]  # file -> plaintext, or why it does not decrypt


def predecrypt(files: Sequence[tuple[Path, str]], *, limits: Limits, decryption: Decryption | None) -> Predecrypted:
    """The plaintext of every SOPS file among ``files`` (real path, name), decrypted in parallel
    before the walk loads them one by one (files over the size limit are left to the loader)."""
    if decryption is None:
        return {}
    items: list[tuple[bytes, str]] = []
    for real, rel in files:
        try:
            if real.stat().st_size > limits.max_file_bytes:
                continue
            data = real.read_bytes()
        except OSError:
            continue  # the loader reports it
        if sops_files.encrypted_documents(data, file=rel, limits=limits) is not None:
            items.append((data, rel))
    results = decryption.decryptor.decrypt_all(items, keys=decryption.keys)
    return {rel: result for (_, rel), result in zip(items, results, strict=True)}


def load_encrypted(
    data: bytes, *, file: str, limits: Limits, decryption: Decryption | None, predecrypted: Predecrypted | None = None
) -> list[Manifest] | None:
    """The objects of a SOPS-encrypted manifest file, decrypted in memory; None if ``data`` is not one.
    ``predecrypted`` holds what ``predecrypt`` already decrypted (the entry is used up)."""
    docs = sops_files.encrypted_documents(data, file=file, limits=limits)
    if docs is None:
        return None
    if decryption is None:
        raise not_configured(file)
    plain = (predecrypted or {}).pop(file, None)
    if isinstance(plain, DecryptionError):
        raise plain
    if plain is None:
        plain = decryption.decryptor.decrypt(data=data, file=file, keys=decryption.keys)
    sops_files.check_fully_encrypted(docs, plain=plain, file=file)
    return [replace(m, decrypted=True) for m in load_text(decode_text(plain, file), file, limits)]


def _rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def _decrypt_closure(
    root: Path, closure: Iterable[Path], *, limits: Limits, decryption: Decryption | None
) -> tuple[dict[Path, bytes], set[bytes]]:
    """(real path -> plaintext) of every encrypted file in ``closure``, and the values they hold."""
    found: list[tuple[Path, str, bytes, list[Any]]] = []
    for p in sorted(closure):
        rel = _rel(root, p)
        data = p.read_bytes()
        docs = sops_files.encrypted_documents(data, file=rel, limits=limits)
        if docs is None:
            continue
        if decryption is None:
            raise not_configured(rel)
        found.append((p, rel, data, docs))
    if not found:
        return {}, set()
    assert decryption is not None
    results = decryption.decryptor.decrypt_all([(data, rel) for _, rel, data, _ in found], keys=decryption.keys)
    plain: dict[Path, bytes] = {}
    values: set[bytes] = set()
    for (p, rel, data, docs), result in zip(found, results, strict=True):
        if isinstance(result, DecryptionError):
            raise result
        sops_files.check_fully_encrypted(docs, plain=result, file=rel, data=data)
        plain[p] = result
        values |= set(sops_files.plaintext_values(result, file=rel, whole=True))
        values |= set(sops_files.plaintext_values(result, file=rel, whole=False))
    return plain, values


def build(
    root: Path,
    directory: Path,
    *,
    file: str,
    max_output: int,
    limits: Limits,
    decryption: Decryption | None,
) -> tuple[int, list[Manifest]]:
    """``kustomize build`` of ``directory``: on the checkout itself when its closure holds no SOPS
    file, else on a decrypted overlay in memory; objects that came out of decryption are marked.
    Returns the size of kustomize's output in bytes (for the revision's budget) and the objects."""
    closure = kustomize.preflight(root, directory, limits=limits)
    plain, values = _decrypt_closure(root, closure, limits=limits, decryption=decryption)
    if not plain:
        text = kustomize.run_build(root, directory, max_output=max_output, file=file)
        return len(text.encode("utf-8")), _load(text, file, limits)
    with decrypt_tree.overlay(root=root, files=closure, plain=plain, file=file) as tree:
        try:
            text = kustomize.run_build(
                tree, tree / directory.relative_to(root), max_output=max_output, file=file, workdir=tree.parent
            )
        except RenderError as e:
            raise RenderError(e.file, e.doc, _scrub(e.why, values)) from None
    ms = [replace(m, decrypted=True) if _from_plaintext(m.obj, values) else m for m in _load(text, file, limits)]
    return len(text.encode("utf-8")), ms


def _load(text: str, file: str, limits: Limits) -> list[Manifest]:
    try:
        return load_text(text, file, limits)
    except ManifestError as e:
        raise (e if isinstance(e, RenderError) else RenderError(e.file, e.doc, e.why)) from None


def _from_plaintext(obj: dict[str, Any], values: set[bytes]) -> bool:
    """A Secret with at least one value, every one of which came out of a decrypted file."""
    held = list(sops_files.secret_values(obj))
    return bool(held) and all(v in values for v in held)


def _scrub(message: str, values: set[bytes]) -> str:
    for v in sorted(values, key=len, reverse=True):
        text = v.decode("utf-8", "replace").strip()
        if len(text) >= _MIN_SCRUB:
            message = message.replace(text, "***")
    return message
