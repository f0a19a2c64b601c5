"""The environment git runs with: secrets only in files and env, never in argv or URLs."""

from __future__ import annotations

import base64
import os
import shlex
import stat
from pathlib import Path

import pytest

from reconciler.source import auth, urls
from reconciler.source.git import GitCredentials

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\r\nAAAA\r\n-----END OPENSSH PRIVATE KEY-----"


def _config(env: dict[str, str]) -> dict[str, str]:
    return {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}


def test_ssh_uses_strict_host_checking_and_private_files(tmp_path: Path) -> None:
    remote = urls.parse("ssh://git@example.com:2222/x.git")
    creds = GitCredentials(ssh_private_key=KEY, known_hosts=b"[example.com]:2222 ssh-ed25519 AAAA")
    with auth.environment(remote, creds, git_dir=tmp_path, timeout=20) as env:
        argv = shlex.split(env["GIT_SSH_COMMAND"])
        opts = dict(a.split("=", 1) for a in argv if "=" in a)
        assert argv[:3] == ["ssh", "-F", os.devnull]
        assert opts["StrictHostKeyChecking"] == "yes"
        assert opts["BatchMode"] == "yes"
        assert opts["IdentitiesOnly"] == "yes"
        assert opts["ConnectTimeout"] == "20"
        assert "accept-new" not in env["GIT_SSH_COMMAND"]
        key = Path(opts["IdentityFile"])
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_bytes().endswith(b"-----END OPENSSH PRIVATE KEY-----\n")  # CRLF and final newline fixed
        assert b"\r" not in key.read_bytes()
        assert Path(opts["UserKnownHostsFile"]).read_bytes().startswith(b"[example.com]:2222")
        assert env["GIT_ALLOW_PROTOCOL"] == "ssh"
        assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert not key.exists(), "the deploy key must not outlive the fetch"


def test_https_token_travels_in_a_config_env_header(tmp_path: Path) -> None:
    remote = urls.parse("https://bot:url-secret@example.com/x.git")
    creds = GitCredentials(bearer_token=None, ca_bundle=b"-----BEGIN CERTIFICATE-----\n")
    with auth.environment(remote, creds, git_dir=tmp_path, timeout=60) as env:
        config = _config(env)
        expected = base64.b64encode(b"bot:url-secret").decode()
        assert config["http.extraHeader"] == f"Authorization: Basic {expected}"
        assert Path(config["http.sslCAInfo"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert "url-secret" not in remote.url
        assert "GIT_SSH_COMMAND" not in env


def test_bearer_token(tmp_path: Path) -> None:
    remote = urls.parse("https://example.com/x.git")
    with auth.environment(remote, GitCredentials(bearer_token="t0k"), git_dir=tmp_path, timeout=60) as env:
        assert _config(env)["http.extraHeader"] == "Authorization: Bearer t0k"


def test_secrets_lists_every_form_a_secret_can_take() -> None:
    remote = urls.parse("https://example.com/x.git")
    found = auth.secrets(remote, GitCredentials(username="u", password="pw"))
    assert "pw" in found
    assert base64.b64encode(b"u:pw").decode() in found


@pytest.mark.parametrize(
    ("url", "creds", "words"),
    [
        ("ssh://git@h/x.git", GitCredentials(ssh_private_key=KEY), "known_hosts is required"),
        ("git@h:x.git", GitCredentials(known_hosts=b"  \n"), "known_hosts is required"),
        ("http://h/x.git", GitCredentials(password="p"), "plain http"),
        ("https://h/x.git", GitCredentials(username="u", bearer_token="t"), "either"),
    ],
)
def test_problems_found_before_connecting(url: str, creds: GitCredentials, words: str) -> None:
    problem = auth.problem(urls.parse(url), creds)
    assert problem is not None
    assert words in problem


def test_repr_never_shows_secrets() -> None:
    text = repr(GitCredentials(ssh_private_key=KEY, password="hunter2", bearer_token="tok", username="u"))
    assert "hunter2" not in text
    assert "tok'" not in text
    assert "OPENSSH" not in text
