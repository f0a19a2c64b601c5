"""Pure parts of the S3 bucket source: the revision digest, cache names, key safety, Secret keys.

Listing, downloading and failures run against the moto server in tests/integration/test_bucket_source.py.
"""

from __future__ import annotations

import pytest

from reconciler.source import bucket, snapshot

LISTING = {"prod/a.yaml": '"e1"', "prod/sub/b.yaml": '"e2"'}


def test_revision_is_a_sha256_of_keys_and_etags_independent_of_listing_order() -> None:
    rev = bucket.revision(LISTING)
    assert rev.startswith("sha256:")
    assert len(rev) == len("sha256:") + 64
    assert bucket.revision(dict(reversed(list(LISTING.items())))) == rev


@pytest.mark.parametrize(
    "other",
    [
        {"prod/a.yaml": '"e1"', "prod/sub/b.yaml": '"e3"'},  # one object rewritten
        {"prod/a.yaml": '"e1"'},  # one deleted
        {**LISTING, "prod/c.yaml": '"e4"'},  # one added
        {"prod/a.yaml": '"e1"', "prod/sub/c.yaml": '"e2"'},  # renamed, same content
        {"prod/a.yaml\0": "", "prod/sub/b.yaml": '"e2"'},  # key/etag boundary cannot be shifted
    ],
)
def test_any_change_changes_the_revision(other: dict[str, str]) -> None:
    assert bucket.revision(other) != bucket.revision(LISTING)


def test_cache_name_differs_per_version_and_per_key() -> None:
    names = {bucket.cache_name("a", '"1"'), bucket.cache_name("a", '"2"'), bucket.cache_name("b", '"1"')}
    assert len(names) == 3
    assert all(len(n) == 64 for n in names)


@pytest.mark.parametrize(
    "key", ["../x.yaml", "prod/../../etc/passwd", "/etc/passwd", "prod//a.yaml", "prod/./a", ".git/config", "a\\b"]
)
def test_keys_that_could_escape_the_tree_are_refused(key: str) -> None:
    with pytest.raises(snapshot.UnsafeTreeError, match="unsafe path"):
        snapshot.safe_parts(key)


def test_ordinary_keys_are_split_into_parts() -> None:
    assert snapshot.safe_parts("prod/apps/a.yaml") == ["prod", "apps", "a.yaml"]


def test_secret_keys_follow_flux_and_never_show_in_repr() -> None:
    creds = bucket.BucketCredentials.from_secret(
        {"accesskey": b"AKIAEXAMPLE", "secretkey": b"s3cr3t-value", "sessiontoken": b"tok-value"}, name="keys"
    )
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("AKIAEXAMPLE", "s3cr3t-value", "tok-value")
    assert not any(s in repr(creds) for s in ("AKIAEXAMPLE", "s3cr3t-value", "tok-value"))


def test_a_secret_without_the_keys_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="Secret keys has no secretkey key"):
        bucket.BucketCredentials.from_secret({"accesskey": b"AKIAEXAMPLE"}, name="keys")
