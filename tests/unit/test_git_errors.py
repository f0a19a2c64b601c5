"""How git's failures read to an operator: one line, summary first, no credentials."""

from __future__ import annotations

import pytest

from reconciler.source import gitcmd
from reconciler.source.artifact import SourceError

MITM = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Offending ED25519 key in /tmp/x/known_hosts:1
Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.

Please make sure you have the correct access rights
and the repository exists.
"""
UNKNOWN = """No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.
Host key verification failed.
fatal: Could not read from remote repository.
"""


@pytest.mark.parametrize(
    ("stderr", "summary"),
    [
        (MITM, "has CHANGED"),
        (UNKNOWN, "is not in known_hosts"),
        ("root@127.0.0.1: Permission denied (publickey).\nfatal: Could not read", "refused the deploy key"),
        ('Load key "/tmp/k": invalid format\nroot@h: Permission denied (publickey).', "could not be loaded"),
        ("fatal: couldn't find remote ref refs/heads/nope", "branch nope not found"),
        ("fatal: could not read Username for 'https://h': terminal prompts disabled", "authentication failed"),
        ("fatal: unable to access 'https://h/x/': The requested URL returned error: 401", "authentication failed"),
        ("fatal: unable to access 'https://h/': SSL certificate problem: self-signed certificate", "TLS certificate"),
        ("ssh: connect to host 127.0.0.1 port 1: Connection refused", "repository unreachable"),
        ("fatal: '/nope.git' does not appear to be a git repository", "repository unreachable"),
        ("error: something new", "git failed"),
        # what the fault trials of tests/integration/test_git_faults.py met, verbatim
        (
            "remote: aborting due to possible repository corruption on the remote side.\n"
            "fatal: protocol error: bad pack header",
            "corrupt on the git server",
        ),
        (
            "error: RPC failed; HTTP 500 curl 22 The requested URL returned error: 500\n"
            "fatal: expected flush after ref listing",
            "server error (HTTP 5xx)",
        ),
        (
            "remote: Service Unavailable\n"
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 503",
            "server error (HTTP 5xx)",
        ),
        ("fatal: https://h/x/info/refs not valid: is this a git repository?", "did not answer as a git server"),
        (
            "fetch-pack: unexpected disconnect while reading sideband packet\nfatal: protocol error: bad pack header",
            "was cut during the transfer",
        ),
    ],
)
def test_explain_puts_a_plain_summary_first(stderr: str, summary: str) -> None:
    reason = gitcmd.explain(stderr, secrets=[], host="127.0.0.1", ref="branch nope")
    assert summary in reason.split(": git said:")[0]
    assert "\n" not in reason


def test_explain_keeps_the_telling_line_not_gits_boilerplate() -> None:
    reason = gitcmd.explain(MITM, secrets=[], host="h", ref="")
    assert "Host key verification failed." in reason
    assert "Please make sure" not in reason
    assert "ssh-keygen" not in reason  # no "remove the key" advice in an Event


def test_explain_scrubs_secrets() -> None:
    reason = gitcmd.explain(
        "fatal: unable to access 'https://u:pw123456@h/x/': The requested URL returned error: 403",
        secrets=["pw123456"],
        host="h",
        ref="",
    )
    assert "pw123456" not in reason


def test_source_error_is_one_line_naming_url_ref_and_reason() -> None:
    err = SourceError("it\nbroke  badly", url="https://h/x.git", ref="branch main")
    assert str(err) == "https://h/x.git (branch main): it broke badly"
    assert (err.url, err.ref, err.reason) == ("https://h/x.git", "branch main", "it broke badly")
    assert str(SourceError("plain")) == "plain"


def test_explain_drops_control_characters_the_remote_sent() -> None:
    """A sideband message from the server ends in NUL (seen with a corrupt repository on the server):
    no control character may reach a status message or an Event."""
    stderr = (
        "remote: aborting due to possible repository corruption on the remote side.\x00\x1b[31m\nfatal: bad pack header"
    )
    reason = gitcmd.explain(stderr, secrets=[], host="h", ref="")
    assert "\x00" not in reason
    assert "\x1b" not in reason
    assert "remote side.[31m fatal: bad pack header" in reason
