"""GitRef parsing and semver tag selection: pure logic, no git involved."""

from __future__ import annotations

import pytest

from reconciler.source import refs
from reconciler.source.git import GitRef

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, GitRef()),
        ({"branch": "main"}, GitRef(branch="main")),
        ({"branch": "release/1.x"}, GitRef(branch="release/1.x")),
        ({"tag": "v1.2.3"}, GitRef(tag="v1.2.3")),
        ({"semver": ">=1.0.0 <2.0.0"}, GitRef(semver=">=1.0.0 <2.0.0")),
        ({"commit": SHA}, GitRef(commit=SHA)),
        ({"branch": "  main "}, GitRef(branch="main")),
    ],
)
def test_from_spec_accepts_each_form(spec: dict[str, str], expected: GitRef) -> None:
    assert GitRef.from_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"branch": "main", "tag": "v1"}, "ref", "only one"),
        ({"brnch": "main"}, "ref.brnch", "unknown field"),
        ({"branch": ""}, "ref.branch", "non-empty"),
        ({"tag": 1.0}, "ref.tag", "string"),
        ({"branch": "--upload-pack=touch /tmp/x"}, "ref.branch", "not a valid git ref"),
        ({"branch": "a..b"}, "ref.branch", "not a valid git ref"),
        ({"tag": "v1 2"}, "ref.tag", "not a valid git ref"),
        ({"tag": "x.lock"}, "ref.tag", "not a valid git ref"),
        ({"semver": "not a range"}, "ref.semver", "semver range"),
        ({"commit": "abc123"}, "ref.commit", "40-character"),
        ({"commit": SHA.upper()}, "ref.commit", "40-character"),
    ],
)
def test_from_spec_names_the_bad_field(spec: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as err:
        GitRef.from_spec(spec)  # type: ignore[arg-type]
    assert str(err.value).startswith(field)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="only one"):
        GitRef(branch="main", commit=SHA)


def test_str_names_the_kind_of_ref() -> None:
    assert str(GitRef(branch="main")) == "branch main"
    assert str(GitRef(semver="^1")) == "semver ^1"
    assert str(GitRef()) == "default branch"


TAGS = ["v0.9.0", "v1.0.0", "v1.2.0", "v1.2.5", "1.3.0", "v1.10.0-rc.1", "v2.0.0", "latest", "v1.4", "release-1.5.0"]


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        (">=1.0.0 <2.0.0", "v1.4"),  # "v1.4" is 1.4.0; 1.10.0-rc.1 is a pre-release: excluded
        (">=1.0.0, <2.0.0", "v1.4"),  # Masterminds' comma-separated AND
        ("^1.2", "v1.4"),
        ("~1.2.0", "v1.2.5"),
        ("1.2.x", "v1.2.5"),
        ("1.x", "v1.4"),
        ("*", "v2.0.0"),
        ("<1.0.0", "v0.9.0"),
        (">=3", None),
        ("1.3.0", "1.3.0"),  # a tag without the leading v
        (">=1.10.0-rc.0 <2", "v1.10.0-rc.1"),  # pre-releases only when the range asks for them
    ],
)
def test_select_tag_picks_the_highest_match(constraint: str, expected: str | None) -> None:
    assert refs.select_tag(constraint, TAGS) == expected


def test_select_tag_ties_resolve_the_same_way_whatever_the_order() -> None:
    assert refs.select_tag("^1", ["1.0.0", "v1.0.0"]) == refs.select_tag("^1", ["v1.0.0", "1.0.0"]) == "v1.0.0"


@pytest.mark.parametrize(("tag", "version"), [("v1", "1.0.0"), ("1.2", "1.2.0"), ("v1.2.3+build.5", "1.2.3+build.5")])
def test_tag_version_pads_short_versions(tag: str, version: str) -> None:
    assert str(refs.tag_version(tag)) == version


@pytest.mark.parametrize("tag", ["latest", "release-1.0.0", "v1.2.3.4", "vv1.0.0", ""])
def test_tags_that_are_not_versions_are_ignored(tag: str) -> None:
    assert refs.tag_version(tag) is None
