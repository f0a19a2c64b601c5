"""Run git under a deadline and turn its failures into one-line reasons a user can act on.

git's own stderr stays in the message (it is often the only clue), but shortened, scrubbed of
credentials, and after a plain-words summary: an operator reading ``kubectl describe`` should
see "host key CHANGED" before any ssh banner.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import git

from reconciler.report import redact

_MAX_DETAIL = 400

# (pattern in git's stderr, summary); the first match wins, so the specific ones come first.
_SUMMARIES: list[tuple[re.Pattern[str], str]] = [
    (
        # git's upload-pack on the server gave up reading its own objects: nothing to fix here
        re.compile(r"possible repository corruption on the remote side"),
        "the repository is corrupt on the git server (it cannot read its own objects)",
    ),
    (
        re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed", re.S),
        "the ssh host key of {host} has CHANGED and no longer matches known_hosts "
        "(possible man-in-the-middle attack); refusing to connect",
    ),
    (
        re.compile(r"No \S+ host key is known for|Host key verification failed"),
        "the ssh host key of {host} is not in known_hosts; refusing to connect (add the server's key to known_hosts)",
    ),
    (
        re.compile(r"Load key .*: "),
        "the ssh deploy key could not be loaded (it must be an unencrypted OpenSSH or PEM private key)",
    ),
    (re.compile(r"Permission denied \(publickey"), "ssh authentication failed: the server refused the deploy key"),
    (
        re.compile(
            r"Authentication failed for|could not read (Username|Password)|terminal prompts disabled"
            r"|requested URL returned error: 40[13]|HTTP Basic: Access denied",
        ),
        "authentication failed: the credentials were refused",
    ),
    (
        re.compile(r"SSL certificate problem|server certificate verification failed|certificate verify failed"),
        "TLS certificate verification failed (is ca_bundle set for a private CA?)",
    ),
    (re.compile(r"couldn't find remote ref"), "{ref} not found in the repository"),
    (
        re.compile(r"requested URL returned error: 5\d\d|RPC failed; HTTP 5\d\d"),
        "the git server at {host} answered with a server error (HTTP 5xx)",
    ),
    (
        re.compile(r"info/refs not valid: is this a git repository\?|invalid server response"),
        "{host} did not answer as a git server (an HTML page or a proxy's answer in its place?)",
    ),
    (
        re.compile(
            r"unexpected disconnect while reading sideband packet|early EOF"
            r"|transfer closed with outstanding read data|RPC failed; curl (18|56)"
        ),
        "the connection to {host} was cut during the transfer",
    ),
    (re.compile(r"Connection timed out|Operation timed out"), "connection to {host} timed out"),
    (
        re.compile(
            r"Could not resolve host|Connection refused|Connection closed|No route to host|Failed to connect"
            r"|does not appear to be a git repository|Could not read from remote repository"
            r"|repository .* not found|requested URL returned error: 404",
        ),
        "repository unreachable",
    ),
]


# git's generic advice after any transport failure: it hides the line that says what happened.
_BOILERPLATE = {
    "fatal: Could not read from remote repository.",
    "Please make sure you have the correct access rights",
    "and the repository exists.",
}


class GitError(Exception):
    """A git command failed; ``str()`` is the user-facing reason, already scrubbed."""


def run(
    gitcmd: git.Git,
    args: Sequence[str],
    *,
    deadline: float,
    timeout: float,
    secrets: Sequence[str],
    host: str,
    ref: str,
) -> str:
    """Run ``git <args>`` and return its stdout; raise GitError with a summarised reason."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise GitError(f"timed out after {timeout:g}s")
    status, out, err = gitcmd.execute(
        ["git", *args],
        with_extended_output=True,
        with_exceptions=False,
        kill_after_timeout=remaining,
    )
    if status == 0:
        return out
    if status < 0 or err.startswith("Timeout:"):
        raise GitError(f"timed out after {timeout:g}s (git {args[0]} was killed)")
    raise GitError(explain(err, secrets=secrets, host=host, ref=ref))


def explain(stderr: str, *, secrets: Sequence[str], host: str, ref: str) -> str:
    """``<summary>: git said: <last lines of stderr>``, on one line."""
    detail = _tail(redact.scrub(redact.scrub_urls(stderr), secrets))
    for pattern, summary in _SUMMARIES:
        if pattern.search(stderr):
            return f"{summary.format(host=host or 'the server', ref=ref)}: git said: {detail}"
    return f"git failed: {detail}" if detail else "git failed without a message"


# Control characters a remote can put in git's stderr (a sideband message ends in NUL): never into
# a status message, an Event or a log line.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _tail(stderr: str) -> str:
    lines = [ln.strip() for ln in _CONTROL.sub("", stderr).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("@") and ln not in _BOILERPLATE]
    text = " ".join(lines[-2:])
    return text if len(text) <= _MAX_DETAIL else "..." + text[-_MAX_DETAIL:]
