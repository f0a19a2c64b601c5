"""Running the pinned ``sops`` binary: ciphertext on stdin, plaintext from stdout, keys in the environment.

Why the binary and not a Python decryptor: SOPS's tree walk, MAC over the values in document
order, ``encrypted_regex``/``unencrypted_suffix`` rules and dotenv/binary stores *are* the
format; the reference implementation decides what a file means, and it is what users encrypt
with.  It is built from the Go module proxy by ``scripts/build-tool sops`` and looked up like
kustomize (``$RECONCILER_SOPS``, then PATH, then the tool cache).

How it is run, and why:

* The ciphertext goes in through a pipe (``--filename-override`` names it for sops's messages),
  the plaintext comes back through a pipe: nothing is written to a file, not even a temporary one
  (unlike :mod:`toolrun`, whose output file is fine for kustomize output but not for plaintext).
* Key material reaches sops through its environment only (``SOPS_AGE_KEY``, ``AWS_*``), never the
  argument list (visible in ``ps``) nor a file.  Nothing else is inherited: ``HOME`` and the XDG
  folders point nowhere, so sops cannot find a key file, an SSH key or a GnuPG home of the
  controller's user that the GitSync was not given; ``PATH`` is empty, so no ``gpg`` is started.
* Unlike kustomize, sops may need the network: AWS KMS.  So the process's proxy settings and the
  non-secret AWS settings (region, endpoint overrides, CA bundle, IRSA's web identity) pass through.
* Its stderr is reduced to the cause; a line that can quote a value (sops prints the offending
  value when one is not in its ``ENC[...]`` format) is replaced by a fixed sentence, and key
  material is scrubbed as a last line of defence.  The exit code names the kind of failure.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path, PurePosixPath

from reconciler.render import tools

SOPS_MODULE = "github.com/getsops/sops/v3/cmd/sops"
SOPS_VERSION = "v3.13.3"  # keep in step with scripts/build-tool (a unit test checks)
SOPS = tools.Tool(name="sops", package=SOPS_MODULE, version=SOPS_VERSION, env="RECONCILER_SOPS")
TIMEOUT_SECONDS = 60.0  # one file; KMS calls included

# Passed through from the controller's own environment: where and how to reach AWS, never who it is
# (credentials come from DecryptionKeys, or from the ambient chain, see ``aws_ambient``).
_AWS_SETTINGS = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_KMS",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CA_BUNDLE",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
)
# The controller's own identity (IRSA, Pod Identity, static variables, a profile): used only when
# the GitSync gives no AWS credentials of its own.
_AWS_AMBIENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
_PROXY = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class Format(StrEnum):
    """sops's stores: how it parses a file (``--input-type``) and prints it (``--output-type``)."""

    YAML = "yaml"
    JSON = "json"
    DOTENV = "dotenv"
    INI = "ini"
    BINARY = "binary"


class Failure(StrEnum):
    """What went wrong, from sops's exit code (getsops/sops cmd/sops/codes)."""

    VALUE = (
        "a value does not decrypt: its ciphertext was altered, or it is not encrypted though the file's rules say "
        "it must be"
    )
    MAC = "the MAC does not verify: the file was changed after it was encrypted"
    NO_MAC = "the file has no MAC"
    KEY = "no key we hold decrypts the file's data key"
    FORMAT = "sops cannot read the file"
    OTHER = "sops failed"


_CODES = {
    24: Failure.MAC,  # ErrorDecryptingMac: the MAC value itself was edited
    25: Failure.VALUE,  # ErrorDecryptingTree
    51: Failure.MAC,  # MacMismatch
    52: Failure.NO_MAC,  # MacNotFound
    128: Failure.KEY,  # CouldNotRetrieveKey
    2: Failure.FORMAT,  # CouldNotReadInputFile
    4: Failure.FORMAT,  # ErrorDumpingTree
}
_QUOTES_VALUE = re.compile(r"Input string .* does not match sops' data format", re.DOTALL)
_AGE_SECRET = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")
# sops's boilerplate around the one line that says why a key failed (and where it looked for more).
_NOISE = (
    re.compile(r"Failed to get the data key required to decrypt the SOPS file\.\s*"),
    re.compile(r"Did not find keys in locations .*?'SOPS_AGE_KEY_CMD'\.\s*"),
    re.compile(r"Recovery failed because no master key was able to decrypt the file\..*?but none were\.\s*"),
)
_MAX_MESSAGE = 1500


class SopsError(Exception):
    """sops refused to decrypt: ``failure`` (the kind) and ``detail`` (its cleaned stderr)."""

    def __init__(self, failure: Failure, detail: str) -> None:
        self.failure, self.detail = failure, detail
        super().__init__(f"{failure.value}: {detail}" if detail else failure.value)


def environment(*, key_env: Mapping[str, str], aws_ambient: bool) -> dict[str, str]:
    """The whole environment of one sops run: ``key_env`` on top of nothing inherited but settings."""
    env = {
        "PATH": "/nonexistent",
        "HOME": "/nonexistent",
        "XDG_CONFIG_HOME": "/nonexistent",
        "GNUPGHOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "SOPS_DISABLE_VERSION_CHECK": "1",
    }
    names = _AWS_SETTINGS + _PROXY + (_AWS_AMBIENT if aws_ambient else ())
    env.update({k: os.environ[k] for k in names if k in os.environ})
    if aws_ambient:  # HOME points nowhere: name the default AWS files (profiles, static keys) outright
        home = Path.home()
        for var, default in (("AWS_CONFIG_FILE", ".aws/config"), ("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials")):
            if var not in env and (home / default).is_file():
                env[var] = str(home / default)
    env.update(key_env)
    return env


def decrypt(
    binary: str, *, data: bytes, fmt: Format, filename: str, env: Mapping[str, str], secrets: frozenset[str]
) -> bytes:
    """sops's plaintext of ``data`` (a whole file in format ``fmt``), or SopsError; ``secrets`` are
    scrubbed from the error (the key material in ``env``)."""
    argv = [binary, "decrypt", "--input-type", fmt.value, "--output-type", fmt.value]
    argv += ["--filename-override", PurePosixPath(filename).name or "input"]
    try:
        proc = subprocess.run(
            argv,
            input=data,
            capture_output=True,
            env=dict(env),
            cwd="/",
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SopsError(Failure.OTHER, f"sops did not finish within {TIMEOUT_SECONDS:.0f}s") from None
    except OSError as e:
        raise SopsError(Failure.OTHER, f"cannot run sops ({binary}): {e.strerror or e}") from None
    if proc.returncode != 0:
        failure = _CODES.get(proc.returncode, Failure.OTHER)
        raise SopsError(failure, clean(proc.stderr.decode("utf-8", "replace"), secrets=secrets))
    return proc.stdout


def clean(stderr: str, *, secrets: frozenset[str]) -> str:
    """sops's stderr as one safe message: no quoted value, no key material, bounded length."""
    msg = _QUOTES_VALUE.sub("a value is not in sops's ENC[...] format", stderr)
    msg = _AGE_SECRET.sub("***", msg)
    for s in sorted(secrets, key=len, reverse=True):
        if s:
            msg = msg.replace(s, "***")
    msg = " ".join(line.strip(" |-") for line in msg.splitlines() if line.strip(" |-"))
    for noise in _NOISE:
        msg = noise.sub("", msg)
    msg = msg.strip()
    return msg if len(msg) <= _MAX_MESSAGE else msg[:_MAX_MESSAGE] + " ...(truncated)"
