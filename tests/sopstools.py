"""SOPS for the tests: age identities from the real ``age-keygen``, files encrypted by the real ``sops``,
KMS keys in the moto server, and a KMS proxy that counts (and can refuse) what sops asks of KMS.

Nothing here hand-rolls crypto: identities come from filippo.io/age (``scripts/build-tool age``),
ciphertext from getsops/sops (``scripts/build-tool sops``), KMS from moto.  ``encrypt`` and
``reference_decrypt`` run sops the way a user does, so a test can compare what the renderer
decrypted with what ``sops --decrypt`` prints.
"""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import awsserver

ROOT = Path(__file__).resolve().parents[1]
AGE_VERSION = "v1.3.1"  # keep in step with scripts/build-tool (the age entry)


def _build(tool: str) -> str:
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-tool"), tool], capture_output=True, text=True, check=True, timeout=600
    )
    return out.stdout.strip().splitlines()[-1]


@functools.cache
def sops_binary() -> str:
    """The pinned sops (built once, then cached outside the repository)."""
    return _build("sops")


@functools.cache
def age_keygen_binary() -> str:
    return str(Path(_build("age")).with_name("age-keygen"))


@dataclass(frozen=True)
class AgeIdentity:
    """One age key pair: ``secret`` is what a decrypting party holds, ``recipient`` what files are encrypted to."""

    secret: str  # AGE-SECRET-KEY-1...
    recipient: str  # age1...

    def __repr__(self) -> str:
        return f"AgeIdentity(recipient={self.recipient})"


def age_identity() -> AgeIdentity:
    """A fresh identity from ``age-keygen`` (it prints the public key as a comment line)."""
    out = subprocess.run([age_keygen_binary()], capture_output=True, text=True, check=True, timeout=30).stdout
    secret = next(line for line in out.splitlines() if line.startswith("AGE-SECRET-KEY-"))
    recipient = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("# public key: "))
    return AgeIdentity(secret=secret, recipient=recipient)


def sops_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for running sops by hand: no user key files, no version check."""
    env = {
        "PATH": "/nonexistent",
        "HOME": "/nonexistent",
        "XDG_CONFIG_HOME": "/nonexistent",
        "SOPS_DISABLE_VERSION_CHECK": "1",
    }
    env.update(extra or {})
    return env


def kms_env(endpoint: str) -> dict[str, str]:
    """AWS variables that point sops (AWS SDK for Go v2) at a KMS on loopback with the moto test account."""
    return {**awsserver.AWS_ENV, "AWS_ENDPOINT_URL_KMS": endpoint}


def encrypt(
    source: Path | bytes,
    *,
    fmt: str,
    age: Iterable[str] = (),
    kms: Iterable[str] = (),
    encrypted_regex: str | None = None,
    unencrypted_suffix: str | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """``source`` encrypted by the real sops for the age recipients and KMS key ARNs given."""
    data = source.read_bytes() if isinstance(source, Path) else source
    argv = [sops_binary(), "encrypt", "--input-type", fmt, "--output-type", fmt, "--filename-override", f"in.{fmt}"]
    if age := list(age):
        argv += ["--age", ",".join(age)]
    if kms := list(kms):
        argv += ["--kms", ",".join(kms)]
    if encrypted_regex is not None:
        argv += ["--encrypted-regex", encrypted_regex]
    if unencrypted_suffix is not None:
        argv += ["--unencrypted-suffix", unencrypted_suffix]
    return _run(argv, data=data, env=env)


def reference_decrypt(data: bytes, *, fmt: str, env: Mapping[str, str]) -> bytes:
    """What ``sops --decrypt`` prints for ``data`` (the oracle of the differential test)."""
    argv = [sops_binary(), "--decrypt", "--input-type", fmt, "--output-type", fmt, "/dev/stdin"]
    return _run(argv, data=data, env=env)


def sops_run(args: list[str], *, data: bytes, env: Mapping[str, str] | None = None) -> bytes:
    """Any other sops command on stdin (``rotate``, ``updatekeys`` need a file: use ``sops_file``)."""
    return _run([sops_binary(), *args], data=data, env=env)


def _run(argv: list[str], *, data: bytes, env: Mapping[str, str] | None) -> bytes:
    proc = subprocess.run(argv, input=data, capture_output=True, env=sops_env(env), timeout=60, check=False, cwd="/")
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv[1:3])} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc.stdout


def kms_key(moto: awsserver.MotoServer, *, description: str = "sops test key") -> str:
    """A new symmetric KMS key in the moto account; its ARN (what ``sops --kms`` takes)."""
    arn: str = moto.client("kms").create_key(Description=description)["KeyMetadata"]["Arn"]
    return arn


class KmsProxy:
    """A loopback HTTP proxy in front of moto that counts KMS operations and can refuse ``Decrypt``.

    sops's KMS client speaks JSON-1.1 with an ``X-Amz-Target: TrentService.<Operation>`` header;
    the proxy counts by operation and, while ``deny`` is set, answers ``Decrypt`` with the
    ``AccessDeniedException`` AWS itself returns when the caller lacks ``kms:Decrypt``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.calls: Counter[str] = Counter()
        self.deny = False
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, operation: str = "Decrypt") -> int:
        with self._lock:
            return self.calls[operation]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2] or "?"
                with proxy._lock:
                    proxy.calls[op] += 1
                if proxy.deny and op == "Decrypt":
                    self._reply(400, {"Content-Type": "application/x-amz-json-1.1"}, _denied())
                    return
                self._forward(body)

            def _forward(self, body: bytes) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                url = proxy.upstream + self.path
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (loopback)
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback moto)
                        self._reply(resp.status, dict(resp.headers), resp.read())
                except urllib.error.HTTPError as e:
                    self._reply(e.code, dict(e.headers), e.read())

            def _reply(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    def start(self) -> None:
        threading.Thread(target=self._server.serve_forever, daemon=True, name="kms-proxy").start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _denied() -> bytes:
    return json.dumps(
        {
            "__type": "AccessDeniedException",
            "message": "User: arn:aws:iam::123456789012:user/test is not authorized to perform: kms:Decrypt",
        }
    ).encode()


@contextmanager
def kms_proxy(moto: awsserver.MotoServer) -> Iterator[KmsProxy]:
    proxy = KmsProxy(moto.endpoint)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
