"""Helm's version constraints (Masterminds/semver v3), checked against its documented equivalences."""

from __future__ import annotations

import pytest

from reconciler.source.charts.semver import ConstraintError, is_exact, parse_constraint, parse_version

VERSIONS = [
    "0.0.3",
    "0.0.4",
    "0.1.0",
    "0.2.3",
    "0.2.9",
    "0.3.0",
    "1.0.0",
    "1.2.0",
    "1.2.3",
    "1.2.9",
    "1.3.0",
    "1.4.5",
    "1.4.6",
    "1.9.9",
    "2.0.0",
    "2.3.0",
    "2.3.4",
    "2.4.0",
    "3.0.0",
    "4.5.0",
    "4.6.0",
]

# The equivalences documented in Masterminds/semver's README (which Helm's docs point to):
# each pair must select the same versions.
EQUIVALENT = [
    ("1.2 - 1.4.5", ">= 1.2 <= 1.4.5"),
    ("2.3.4 - 4.5", ">= 2.3.4 <= 4.5"),
    ("1.2.x", ">= 1.2.0, < 1.3.0"),
    (">= 1.2.x", ">= 1.2.0"),
    ("<= 2.x", "< 3"),
    ("*", ">= 0.0.0"),
    ("~1.2.3", ">= 1.2.3, < 1.3.0"),
    ("~1", ">= 1, < 2"),
    ("~2.3", ">= 2.3, < 2.4"),
    ("~1.2.x", ">= 1.2.0, < 1.3.0"),
    ("~1.x", ">= 1, < 2"),
    ("^1.2.3", ">= 1.2.3, < 2.0.0"),
    ("^1.2.x", ">= 1.2.0, < 2.0.0"),
    ("^2.3", ">= 2.3, < 3"),
    ("^2.x", ">= 2.0.0, < 3"),
    ("^0.2.3", ">=0.2.3 <0.3.0"),
    ("^0.2", ">=0.2.0 <0.3.0"),
    ("^0.0.3", ">=0.0.3 <0.0.4"),
    ("^0.0", ">=0.0.0 <0.1.0"),
    ("^0", ">=0.0.0 <1.0.0"),
]


@pytest.mark.parametrize(("short", "long"), EQUIVALENT)
def test_documented_equivalences(short: str, long: str) -> None:
    a, b = parse_constraint(short), parse_constraint(long)
    assert [v for v in VERSIONS if a.allows(v)] == [v for v in VERSIONS if b.allows(v)]


@pytest.mark.parametrize(
    ("constraint", "best"),
    [
        (">=1.2.0 <2.0.0", "1.9.9"),
        ("~1.2", "1.2.9"),
        ("^1.2", "1.9.9"),
        ("1.2.x", "1.2.9"),
        ("*", "4.6.0"),
        ("1.2", "1.2.9"),  # no operator and a partial version: a tilde range
        ("=1.2.3", "1.2.3"),
        ("!=4.6.0", "4.5.0"),
        (">1.2", "4.6.0"),
        ("<1.2", "1.0.0"),
        ("<=1.2", "1.2.9"),
        ("~>2.3", "2.3.4"),
        ("=> 2.3, =< 2.4", "2.4.0"),
        ("^0.2.3 || ^1.2.3", "1.9.9"),
        ("v1.2.3", "1.2.3"),
        (">=5", None),
    ],
)
def test_highest_match(constraint: str, best: str | None) -> None:
    assert parse_constraint(constraint).best(VERSIONS) == best


def test_prereleases_only_when_the_and_group_names_one() -> None:
    versions = ["1.2.3", "1.2.4-beta.2", "1.5.0-alpha", "2.0.0-rc.1"]
    assert parse_constraint("*").best(versions) == "1.2.3"
    assert parse_constraint(">=1.2.3-beta.1").best(versions) == "2.0.0-rc.1"  # any prerelease, not same-patch
    assert parse_constraint(">=1.2.3-0 <2.0.0").best(versions) == "2.0.0-rc.1"  # rc.1 precedes 2.0.0
    assert parse_constraint(">=1.2.3-0 <1.9.0").best(versions) == "1.5.0-alpha"
    assert parse_constraint("^1.2 || >=2.0.0-0").best(versions) == "2.0.0-rc.1"


def test_build_metadata_is_ignored_and_lenient_versions_parse() -> None:
    assert parse_constraint("1.2.3").allows("1.2.3+build.5")
    assert parse_version("v1.2") == parse_version("1.2.0")
    assert parse_version("1.2.3.4") is None
    assert parse_version("latest") is None


@pytest.mark.parametrize("bad", ["", ">>1", "1.2.3 junk", "~", "1.2.3 ||"])
def test_invalid_constraints(bad: str) -> None:
    with pytest.raises(ConstraintError):
        parse_constraint(bad)


def test_is_exact() -> None:
    assert is_exact("1.2.3")
    assert is_exact("v1.2.3-rc.1")
    assert not is_exact("1.2")
    assert not is_exact("^1.2.3")
    assert not is_exact("1.2.x")
