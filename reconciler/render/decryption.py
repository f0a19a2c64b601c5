"""SOPS decryption for rendering: the keys a render may use, and the process-wide decryptor.

What a caller (the GitSync controller, the CLI) hands to ``render`` is a :class:`Decryption`:
the :class:`DecryptionKeys` of that GitSync (age identities, AWS credentials or the controller's
own AWS chain) and the one :class:`Decryptor` of the process.  The decryptor runs the pinned
``sops`` binary (:mod:`sops_tool`: stdin in, stdout out, keys by environment) and remembers what
it decrypted, keyed by the SHA-256 of the ciphertext and a fingerprint of the keys, so that a
no-op reconcile of an unchanged revision runs no sops and makes no KMS call.

Why the cache key holds the key fingerprint: plaintext decrypted with one GitSync's keys must
never be handed to another GitSync that does not hold them (the ciphertext alone is public).
The cache lives in memory only, bounded by entries and by bytes, least recently used first out.

Key material never leaves these objects except into sops's environment: ``repr`` shows counts,
not keys, and every error is scrubbed of it.  Errors name the file (and the key path, where one
value is to blame), never a value: :class:`DecryptionError` is a RenderError, so a failed
decryption fails the whole render and nothing is applied or pruned.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from reconciler.render import sops_tool
from reconciler.render.errors import RenderError
from reconciler.render.sops_tool import Format

WORKERS = 4  # sops runs at once when a render decrypts many files (see Decryptor.decrypt_all)


class DecryptionError(RenderError):
    """A file that cannot be decrypted: names the file, the key path where sops gives one, and the cause."""

    def __init__(self, *, file: str, reason: str, key_path: str | None = None) -> None:
        self.reason, self.key_path = reason, key_path
        at = f" at {key_path}" if key_path else ""
        super().__init__(file, None, f"cannot decrypt (SOPS){at}: {reason}")


@dataclass(frozen=True, repr=False)
class AwsKmsCredentials:
    """AWS credentials a GitSync brings for KMS (Flux's ``sops.aws-kms`` Secret entry)."""

    access_key_id: str  # no default
    secret_access_key: str  # no default
    session_token: str | None = None  # default None: long-lived keys

    def __repr__(self) -> str:
        return "AwsKmsCredentials(<redacted>)"

    def env(self) -> dict[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass(frozen=True, repr=False)
class DecryptionKeys:
    """The keys one render may decrypt with.

    ``aws_kms`` None means the controller's own AWS credential chain (IRSA's web identity, Pod
    Identity, ``AWS_*`` variables): sops reaches KMS as the controller's role, as in Flux.
    """

    age_identities: tuple[str, ...] = ()  # ``AGE-SECRET-KEY-1...`` lines; default none
    aws_kms: AwsKmsCredentials | None = None  # default None: the process's own AWS chain
    # Default True: without aws_kms, the process's own AWS chain; False: no AWS identity at all (a
    # tenant under the controller's lock-down must not decrypt KMS files with the controller's role).
    aws_ambient: bool = True

    def __repr__(self) -> str:
        aws = "given" if self.aws_kms is not None else ("own" if self.aws_ambient else "none")
        return f"DecryptionKeys(age_identities=<{len(self.age_identities)} redacted>, aws_kms=<{aws}>)"

    def env(self) -> dict[str, str]:
        """The variables that hand these keys to sops."""
        env = {"SOPS_AGE_KEY": "\n".join(self.age_identities)} if self.age_identities else {}
        if self.aws_kms is not None:
            env.update(self.aws_kms.env())
        return env

    def secrets(self) -> frozenset[str]:
        """Every piece of key material, to scrub from messages."""
        out = set(self.age_identities)
        if self.aws_kms is not None:
            out |= {self.aws_kms.secret_access_key, self.aws_kms.session_token or ""}
        return frozenset(s for s in out if s)

    def fingerprint(self) -> str:
        """A digest of the key material: part of the cache key, never the material itself."""
        h = hashlib.sha256()
        for part in (*sorted(self.age_identities), f"aws:{self.aws_ambient}", *sorted(self.env().items())):
            h.update(repr(part).encode() + b"\0")
        return h.hexdigest()


def file_format(file: str) -> Format:
    """sops's store for a file, by its name as sops itself chooses (anything unknown is binary)."""
    name = PurePosixPath(file).name
    suffix = PurePosixPath(file).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return Format.YAML
    if suffix == ".json":
        return Format.JSON
    if suffix == ".env" or name == ".env":
        return Format.DOTENV
    if suffix == ".ini":
        return Format.INI
    return Format.BINARY


@dataclass
class _Cache:
    """Least-recently-used plaintexts, bounded by entries and bytes."""

    max_entries: int
    max_bytes: int
    entries: OrderedDict[tuple[str, str, str], bytes] = field(default_factory=OrderedDict)
    size: int = 0

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: tuple[str, str, str], value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        if (old := self.entries.pop(key, None)) is not None:
            self.size -= len(old)
        self.entries[key] = value
        self.size += len(value)
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.size -= len(dropped)


class Decryptor:
    """The process's one way to decrypt: sops, behind a bounded in-memory cache.

    ``decryptions`` counts sops runs (each decrypts one file: one KMS call per data key in it),
    ``cache_hits`` counts files answered from the cache; the benchmark and metrics read both.
    Thread-safe: GitSyncs render in parallel.
    """

    def __init__(
        self, *, binary: str | None = None, max_entries: int = 4096, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self._binary = binary  # default None: found like kustomize (RECONCILER_SOPS, PATH, tool cache)
        self._cache = _Cache(max_entries=max_entries, max_bytes=max_bytes)
        self._lock = threading.Lock()
        self.decryptions = 0
        self.cache_hits = 0

    def __repr__(self) -> str:
        return f"Decryptor(decryptions={self.decryptions}, cache_hits={self.cache_hits})"

    def binary(self, file: str) -> str:
        """The sops binary (looked up once), or DecryptionError naming ``file`` and how to install it."""
        if self._binary is None:
            try:
                self._binary = sops_tool.SOPS.require(file)
            except RenderError as e:
                raise DecryptionError(file=file, reason=e.why) from None
        return self._binary

    def decrypt(self, *, data: bytes, file: str, keys: DecryptionKeys, fmt: Format | None = None) -> bytes:
        """The plaintext of the SOPS file ``data`` (``file`` names it in errors and picks the format
        unless ``fmt`` is given), from the cache when the same ciphertext was decrypted with the same keys."""
        fmt = fmt or file_format(file)
        key = (hashlib.sha256(data).hexdigest(), keys.fingerprint(), fmt.value)
        with self._lock:
            if (hit := self._cache.get(key)) is not None:
                self.cache_hits += 1
                return hit
        binary = self.binary(file)
        env = sops_tool.environment(key_env=keys.env(), aws_ambient=keys.aws_kms is None and keys.aws_ambient)
        if keys.aws_kms is None and not keys.aws_ambient:
            env["AWS_EC2_METADATA_DISABLED"] = "true"  # no identity at all: not even the node's instance role
        try:
            plain = sops_tool.decrypt(binary, data=data, fmt=fmt, filename=file, env=env, secrets=keys.secrets())
        except sops_tool.SopsError as e:
            raise DecryptionError(file=file, reason=str(e)) from None
        with self._lock:
            self.decryptions += 1
            self._cache.put(key, plain)
        return plain

    def decrypt_all(self, items: Sequence[tuple[bytes, str]], *, keys: DecryptionKeys) -> list[bytes | DecryptionError]:
        """``decrypt`` of every (data, file) in ``items``, up to ``WORKERS`` sops runs at once: each
        plaintext, or the DecryptionError of that file (the caller raises it where the file comes up,
        so the first error reported is the first in file order, as if decrypted one by one).

        Why in parallel: a sops run spends most of its time starting up and waiting for KMS, so a
        revision of hundreds of encrypted files (a controller's first reconcile) would otherwise take
        hundreds of round trips end to end."""

        def one(item: tuple[bytes, str]) -> bytes | DecryptionError:
            try:
                return self.decrypt(data=item[0], file=item[1], keys=keys)
            except DecryptionError as e:
                return e

        if len(items) < 2:  # a pool for one file is pure overhead
            return [one(i) for i in items]
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="sops") as pool:
            return list(pool.map(one, items))

    def clear(self) -> None:
        """Forget every cached plaintext (tests, and key rotation by hand)."""
        with self._lock:
            self._cache = _Cache(max_entries=self._cache.max_entries, max_bytes=self._cache.max_bytes)


@dataclass(frozen=True)
class Decryption:
    """What ``RenderOptions.decryption`` holds: whose keys, and the process's decryptor."""

    keys: DecryptionKeys  # no default
    decryptor: Decryptor  # no default: normally ``shared_decryptor()``


_SHARED: Decryptor | None = None
_SHARED_LOCK = threading.Lock()


def shared_decryptor() -> Decryptor:
    """The process-wide decryptor (one cache for every GitSync; the cache key keeps them apart)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Decryptor()
        return _SHARED
