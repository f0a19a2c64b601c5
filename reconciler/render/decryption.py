"""TEMPORARY stub of the sops helper's interface (branch sops); replaced by theirs on merge."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AwsKmsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


@dataclass(frozen=True)
class DecryptionKeys:
    age_identities: tuple[str, ...] = ()
    aws_kms: AwsKmsCredentials | None = None


class Decryptor:
    def __init__(self) -> None:
        self.decryptions = 0
        self.cache_hits = 0


@dataclass(frozen=True)
class Decryption:
    keys: DecryptionKeys
    decryptor: Decryptor
