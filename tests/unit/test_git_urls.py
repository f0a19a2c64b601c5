"""URL classification: which git remotes we fetch from, and credentials lifted out of them.

How credentials are hidden in messages is tested with reconciler.report.redact (test_redact.py).
"""

from __future__ import annotations

import pytest

from reconciler.source import urls


@pytest.mark.parametrize(
    ("url", "transport", "host"),
    [
        ("file:///srv/git/fleet.git", "file", ""),
        ("ssh://git@example.com:2222/org/fleet.git", "ssh", "example.com"),
        ("ssh://git@[::1]:2222/org/fleet.git", "ssh", "::1"),
        ("git@github.com:org/fleet.git", "ssh", "github.com"),
        ("deploy@10.0.0.1:/abs/fleet.git", "ssh", "10.0.0.1"),
        ("git@[::1]:fleet.git", "ssh", "::1"),
        ("https://example.com/org/fleet.git", "https", "example.com"),
        ("http://example.com/org/fleet.git", "http", "example.com"),
    ],
)
def test_parse_accepts_the_supported_forms(url: str, transport: str, host: str) -> None:
    parsed = urls.parse(url)
    assert (parsed.transport, parsed.host, parsed.url) == (transport, host, url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ext::sh -c touch% /tmp/pwned",
        "-uhello",
        "/srv/git/fleet.git",
        "ftp://example.com/x.git",
        "file://otherhost/x.git",
        "ssh://user:secret@host/x.git",
        "https://host/x.git\nfoo",
        " https://host/x.git",
    ],
)
def test_parse_rejects_other_forms(url: str) -> None:
    with pytest.raises(ValueError, match=r"^url: "):
        urls.parse(url)


def test_https_credentials_are_lifted_out_of_the_url() -> None:
    parsed = urls.parse("https://x-access-token:ghp_s3cr%40t@example.com:8443/org/fleet.git")
    assert parsed.url == "https://example.com:8443/org/fleet.git"
    assert (parsed.username, parsed.password) == ("x-access-token", "ghp_s3cr@t")


def test_rejection_message_never_repeats_the_secret() -> None:
    with pytest.raises(ValueError, match="unsupported") as err:
        urls.parse("ftp://user:hunter22@example.com/x.git")
    assert "hunter22" not in str(err.value)
