"""Credentials for git transports, handed to git through files and environment variables only.

Secrets never go into a URL or an argument list (both are visible in ``ps`` and end up in
error messages): the deploy key and known_hosts are written to 0600 files in a private temp
dir, and https headers and the CA path travel as ``GIT_CONFIG_*`` environment entries.
git runs without system/global config, agent or prompts, and only with the transport the URL
names; the rest of the process environment is inherited on purpose, so an operator's
``HTTPS_PROXY``/``NO_PROXY`` or ``GIT_SSL_CAINFO`` still apply.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.source import urls


@dataclass(frozen=True)
class GitCredentials:
    """What a GitSync's secretRef may hold; secret fields are left out of ``repr`` so a logged
    source object never prints them."""

    ssh_private_key: bytes | None = field(default=None, repr=False)
    known_hosts: bytes | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    ca_bundle: bytes | None = None


def problem(remote: urls.GitURL, creds: GitCredentials) -> str | None:
    """A reason to refuse before any connection is made, or None."""
    if remote.transport == "ssh" and not (creds.known_hosts or b"").strip():
        return "known_hosts is required for ssh URLs (host keys are never accepted blindly)"
    if remote.transport == "http" and (_authorization(remote, creds) is not None):
        return "refusing to send credentials over plain http:// (use https://)"
    if creds.bearer_token and (creds.username or creds.password or remote.password is not None):
        return "set either a bearer token or username/password, not both"
    return None


def secrets(remote: urls.GitURL, creds: GitCredentials) -> list[str]:
    """Every string that must be scrubbed from git's stderr before it is shown."""
    found = [creds.password, creds.bearer_token, remote.password]
    header = _authorization(remote, creds)
    if header is not None:
        found.append(header.split(" ", 2)[-1])
    return [s for s in found if s]


@contextlib.contextmanager
def environment(
    remote: urls.GitURL, creds: GitCredentials, *, git_dir: Path, timeout: float
) -> Iterator[dict[str, str]]:
    """The environment for every git child of one fetch; its temp files vanish on exit."""
    with tempfile.TemporaryDirectory(prefix="reconciler-git-") as tmp:
        config: list[tuple[str, str]] = [("credential.helper", ""), ("core.askPass", "")]
        env = {
            "GIT_DIR": str(git_dir),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_PARAMETERS": "",  # set by `git -c` when we run under a git hook
            "GIT_ALLOW_PROTOCOL": remote.transport,
            "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
            "GIT_HTTP_LOW_SPEED_TIME": str(max(5, int(timeout))),
            "LC_ALL": "C",
            "LANGUAGE": "C",
        }
        if remote.transport == "ssh":
            env["GIT_SSH_COMMAND"] = _ssh_command(Path(tmp), creds, timeout)
            env["GIT_SSH_VARIANT"] = "ssh"
        header = _authorization(remote, creds)
        if header is not None:
            config += [("http.extraHeader", header), ("http.followRedirects", "false")]
        if creds.ca_bundle and remote.transport == "https":
            ca = str(_private_file(Path(tmp) / "ca.pem", creds.ca_bundle))
            config.append(("http.sslCAInfo", ca))
            env["GIT_SSL_CAINFO"] = ca  # an inherited GIT_SSL_CAINFO would override the config entry
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for i, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        yield env


def _authorization(remote: urls.GitURL, creds: GitCredentials) -> str | None:
    if creds.bearer_token:
        return f"Authorization: Bearer {creds.bearer_token}"
    user = creds.username if creds.username is not None else remote.username
    password = creds.password if creds.password is not None else remote.password
    if user is None and password is None:
        return None
    token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
    return f"Authorization: Basic {token}"


def _ssh_command(tmp: Path, creds: GitCredentials, timeout: float) -> str:
    known_hosts = _private_file(tmp / "known_hosts", creds.known_hosts or b"")
    key = _private_file(tmp / "deploy_key", creds.ssh_private_key) if creds.ssh_private_key else None
    options = {
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "IdentityFile": str(key) if key else "none",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": os.devnull,
        "UpdateHostKeys": "no",
        "CheckHostIP": "no",
        "BatchMode": "yes",
        "PreferredAuthentications": "publickey",
        "ConnectTimeout": str(max(1, min(int(timeout), 30))),
        "ServerAliveInterval": "15",
        "ServerAliveCountMax": "3",
        "ControlMaster": "no",
        "ControlPath": "none",
    }
    args = ["ssh", "-F", os.devnull]
    for name, value in options.items():
        args += ["-o", f"{name}={value}"]
    return shlex.join(args)


def _private_file(path: Path, data: bytes) -> Path:
    """OpenSSH rejects keys with CRLF or without a final newline; secrets from YAML often have both."""
    text = data.replace(b"\r\n", b"\n")
    if not text.endswith(b"\n"):
        text += b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text)
    return path
