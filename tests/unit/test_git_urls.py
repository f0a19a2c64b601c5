"""URL classification and credential scrubbing: what may appear in a message or a log."""

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


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:token@example.com/x.git", "https://example.com/x.git"),
        ("https://token@example.com/x.git", "https://example.com/x.git"),
        ("ssh://git@example.com/x.git", "ssh://git@example.com/x.git"),
        ("git@example.com:x.git", "git@example.com:x.git"),
        ("file:///srv/x.git", "file:///srv/x.git"),
    ],
)
def test_redact_keeps_what_is_not_secret(url: str, shown: str) -> None:
    assert urls.redact(url) == shown


def test_scrub_removes_userinfo_and_known_secrets_from_git_output() -> None:
    stderr = (
        "fatal: unable to access 'https://bot:tok3n@example.com/x.git/': The requested URL returned error: 403\n"
        "Authorization: Bearer abcdefsecret"
    )
    out = urls.scrub(stderr, ["tok3n", "abcdefsecret", None, ""])
    assert "tok3n" not in out
    assert "abcdefsecret" not in out
    assert "https://***@example.com/x.git/" in out
