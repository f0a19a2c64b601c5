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


def _tail(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("@") and ln not in _BOILERPLATE]
    text = " ".join(lines[-2:])
    return text if len(text) <= _MAX_DETAIL else "..." + text[-_MAX_DETAIL:]
