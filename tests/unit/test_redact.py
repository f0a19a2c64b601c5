"""Secrets out of every message: credentials in URLs, what is collected from manifests, how it is masked."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from reconciler.render.manifests import Manifest
from reconciler.report.redact import MASK, MIN_LEN, redact_url, scrub, scrub_urls, secret_values


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(
    data: dict[str, Any] | None = None,
    string_data: dict[str, Any] | None = None,
    *,
    api_version: str = "v1",
    kind: str = "Secret",
    name: str = "creds",
) -> Manifest:
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    if data is not None:
        obj["data"] = data
    if string_data is not None:
        obj["stringData"] = string_data
    return Manifest(obj=obj, file="secrets.yaml", doc=1)


# --- secret_values -----------------------------------------------------------------------


def test_min_len_and_mask() -> None:
    assert MIN_LEN == 4
    assert MASK == "***"


def test_data_values_plain_and_base64() -> None:
    values = secret_values([secret({"password": b64("hunter2-Pr0d-DB-pass")})])
    assert values == frozenset({"hunter2-Pr0d-DB-pass", b64("hunter2-Pr0d-DB-pass")})


def test_string_data_values_plain_and_base64() -> None:
    values = secret_values([secret(string_data={"token": "ghp_k3yAddedLater"})])
    assert values == frozenset({"ghp_k3yAddedLater", b64("ghp_k3yAddedLater")})


def test_data_and_string_data_together_across_manifests() -> None:
    values = secret_values(
        [
            secret({"a": b64("first-secret"), "b": b64("second-secret")}, {"c": "third-secret"}),
            secret({"d": b64("fourth-secret")}, name="other"),
        ]
    )
    for plain in ("first-secret", "second-secret", "third-secret", "fourth-secret"):
        assert plain in values
        assert b64(plain) in values
    assert len(values) == 8


def test_returns_a_frozenset_and_accepts_any_iterable() -> None:
    values = secret_values(m for m in [secret(string_data={"k": "generator-value"})])
    assert isinstance(values, frozenset)
    assert "generator-value" in values


def test_no_manifests_no_values() -> None:
    assert secret_values([]) == frozenset()


@pytest.mark.parametrize(
    "m",
    [
        secret(string_data={"k": "not-a-secret-value"}, kind="ConfigMap"),
        Manifest(
            obj={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "config-value"}},
            file="cm.yaml",
            doc=1,
        ),
        secret({"k": b64("sealed-value")}, api_version="bitnami.com/v1alpha1"),
        secret(string_data={"k": "external-value"}, api_version="external-secrets.io/v1beta1"),
        secret(string_data={"k": "lowercase-kind"}, kind="secret"),
    ],
)
def test_non_secrets_are_ignored(m: Manifest) -> None:
    assert secret_values([m]) == frozenset()


def test_secret_without_data_or_with_null_maps() -> None:
    assert secret_values([secret()]) == frozenset()
    assert secret_values([secret(data={}, string_data={})]) == frozenset()
    m = Manifest(
        obj={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": None, "stringData": None},
        file="s.yaml",
        doc=1,
    )
    assert secret_values([m]) == frozenset()


@pytest.mark.parametrize("short", ["", "a", "ab", "abc"])
def test_short_string_data_values_are_ignored(short: str) -> None:
    values = secret_values([secret(string_data={"k": short})])
    assert short not in values
    # The base64 form of a 1-3 character value is 4 characters long and is still collected.
    if short:
        assert values == frozenset({b64(short)})
    else:
        assert values == frozenset()


def test_four_characters_is_enough() -> None:
    assert "abcd" in secret_values([secret(string_data={"k": "abcd"})])
    assert "abcd" in secret_values([secret({"k": b64("abcd")})])


def test_short_decoded_data_value_is_ignored_but_its_base64_kept() -> None:
    values = secret_values([secret({"port": b64("on")})])  # "b24="
    assert "on" not in values
    assert values == frozenset({"b24="})


def test_short_raw_data_values_are_ignored() -> None:
    # "YQ" is not valid (unpadded) base64 and too short anyway.
    assert secret_values([secret({"k": "YQ"})]) == frozenset()


@pytest.mark.parametrize(
    "bad",
    [
        "not base64 at all!",
        "c2VjcmV0=",  # "secret" with broken padding
        "@@@@@@@@",
        "YWJjZA",  # missing padding
    ],
)
def test_invalid_base64_does_not_crash_and_keeps_the_raw_value(bad: str) -> None:
    values = secret_values([secret({"k": bad, "ok": b64("still-collected")})])
    assert bad in values
    assert "still-collected" in values


def test_invalid_base64_collects_no_decoded_form() -> None:
    values = secret_values([secret({"k": "not base64 at all!"})])
    assert values == frozenset({"not base64 at all!"})


def test_non_utf8_data_does_not_crash() -> None:
    raw = base64.b64encode(b"\xff\xfe\xfd\xfc\xfb").decode()
    values = secret_values([secret({"bin": raw, "ok": b64("utf8-value")})])
    assert raw in values
    assert "utf8-value" in values
    assert len(values) == 3


def test_non_string_values_are_collected_as_text() -> None:
    # YAML turns an unquoted 123456 into an int.
    values = secret_values([secret(string_data={"pin": 123456})])
    assert "123456" in values
    assert b64("123456") in values


def test_null_values_are_not_collected() -> None:
    values = secret_values([secret({"empty": None, "ok": b64("real-value")}, {"also-empty": None})])
    assert values == frozenset({"real-value", b64("real-value")})


WRAPPED_PLAIN = (
    "-----BEGIN PRIVATE KEY-----\n" + "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" * 4 + "\n-----END PRIVATE KEY-----\n"
)


def _wrap(text: str, width: int = 76) -> str:
    return "\n".join(text[i : i + width] for i in range(0, len(text), width)) + "\n"


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [
        ("hunter2-Pr0d-DB-pass", b64("hunter2-Pr0d-DB-pass") + "\n"),  # `password: |` block
        (WRAPPED_PLAIN, _wrap(b64(WRAPPED_PLAIN))),  # `base64 key.pem` pasted into a `|` block
    ],
    ids=["trailing-newline", "wrapped-76"],
)
def test_data_with_line_breaks_is_decoded(plain: str, encoded: str) -> None:
    assert "\n" in encoded
    values = secret_values([secret({"k": encoded})])
    assert plain in values
    assert b64(plain) in values


# --- scrub -------------------------------------------------------------------------------


def test_scrub_replaces_every_occurrence() -> None:
    msg = "password hunter2-pass rejected; hunter2-pass is too weak: hunter2-pass"
    assert scrub(msg, {"hunter2-pass"}) == "password *** rejected; *** is too weak: ***"


def test_scrub_several_values() -> None:
    msg = "user=admin-user pass=s3cr3t-pass token=dG9rZW4tdmFsdWU="
    got = scrub(msg, ["admin-user", "s3cr3t-pass", "dG9rZW4tdmFsdWU="])
    assert got == "user=*** pass=*** token=***"


def test_scrub_longest_first_when_a_value_contains_another() -> None:
    # Shortest first would leave "***-suffix" and reveal that the longer value extends the shorter.
    long, short = "hunter2-pass-suffix", "hunter2-pass"
    msg = f"a={long} b={short}"
    expected = "a=*** b=***"
    assert scrub(msg, [short, long]) == expected
    assert scrub(msg, [long, short]) == expected
    assert scrub(msg, {short, long}) == expected
    assert scrub(msg, frozenset({short, long})) == expected


def test_scrub_longest_first_with_the_shorter_value_in_the_middle() -> None:
    long, short = "pre-s3cr3t-post", "s3cr3t"
    assert scrub(f"x {long} y {short} z", [short, long]) == "x *** y *** z"


def test_scrub_plain_and_base64_from_secret_values() -> None:
    values = secret_values([secret({"password": b64("hunter2-Pr0d-DB-pass")}, {"token": "ghp_k3yAddedLater"})])
    msg = (
        f'Secret "creds" is invalid: data[password]: "{b64("hunter2-Pr0d-DB-pass")}" (hunter2-Pr0d-DB-pass); '
        f"stringData[token]: ghp_k3yAddedLater / {b64('ghp_k3yAddedLater')}"
    )
    out = scrub(msg, values)
    for v in values:
        assert v not in out
    assert out == 'Secret "creds" is invalid: data[password]: "***" (***); stringData[token]: *** / ***'


def test_scrub_leaves_messages_without_values_alone() -> None:
    msg = "Deployment/shop/web: field spec.selector is immutable"
    assert scrub(msg, {"hunter2-pass", "ghp_k3yAddedLater"}) == msg
    assert scrub(msg, []) == msg
    assert scrub("", {"hunter2-pass"}) == ""


def test_scrub_is_case_sensitive() -> None:
    assert scrub("HUNTER2-PASS", {"hunter2-pass"}) == "HUNTER2-PASS"


def test_scrub_multiline_value() -> None:
    value = "line-one\nline-two"
    assert scrub(f"got: {value}!", {value}) == "got: ***!"


# --- URLs (moved from test_git_urls.py) -------------------------------------------------


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
    assert redact_url(url) == shown


def test_scrub_removes_userinfo_and_known_secrets_from_git_output() -> None:
    stderr = (
        "fatal: unable to access 'https://bot:tok3n@example.com/x.git/': The requested URL returned error: 403\n"
        "Authorization: Bearer abcdefsecret"
    )
    out = scrub(scrub_urls(stderr), ["tok3n", "abcdefsecret", None, ""])
    assert "tok3n" not in out
    assert "abcdefsecret" not in out
    assert "https://***@example.com/x.git/" in out


def test_scrub_masks_one_or_two_character_values_only_where_they_stand_alone() -> None:
    """Masking every "1" in "line 12" would garble the message and hide nothing."""
    assert scrub("line 12: value 1", ["1"]) == "line 12: value ***"
    assert scrub("line 12: value ab", ["ab", None, ""]) == "line 12: value ***"
