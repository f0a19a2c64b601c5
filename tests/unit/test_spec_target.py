"""spec.target: syncing a GitSync into a remote EKS cluster; bad values name the field."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.gitsync.spec import EksTarget, SpecError, allow_pattern, parse


def gs(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "apps", "namespace": "team-a"},
        "spec": {"source": {"git": {"url": "ssh://git@h/r.git"}}, **spec},
    }


def test_no_target_means_the_local_cluster() -> None:
    assert parse(gs()).target is None


def test_eks_target() -> None:
    s = parse(gs(target={"eks": {"cluster": "prod-1", "region": "eu-west-1"}}))
    assert s.target == EksTarget("prod-1", "eu-west-1")
    assert hash(s.target) == hash(EksTarget("prod-1", "eu-west-1"))  # the controller caches per target


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({}, "spec.target.eks"),
        ({"eks": "prod"}, "spec.target.eks"),
        ("prod", "spec.target.eks"),
        ({"eks": {"region": "eu-west-1"}}, "spec.target.eks.cluster"),
        ({"eks": {"cluster": "-bad", "region": "eu-west-1"}}, "spec.target.eks.cluster"),
        ({"eks": {"cluster": 7, "region": "eu-west-1"}}, "spec.target.eks.cluster"),
        ({"eks": {"cluster": "prod"}}, "spec.target.eks.region"),
        ({"eks": {"cluster": "prod", "region": "Europe"}}, "spec.target.eks.region"),
    ],
)
def test_bad_targets_name_the_field(target: Any, field: str) -> None:
    with pytest.raises(SpecError) as e:
        parse(gs(target=target))
    assert str(e.value).startswith(field)


@pytest.mark.parametrize(
    ("patterns", "allowed"),
    [
        ((), False),  # the default: no remote target at all
        (("prod/eu-west-1",), True),
        (("prod/us-east-1",), False),
        (("*/eu-west-1",), True),
        (("prod-*/*",), False),
        (("pro*/eu-*",), True),
        (("*",), True),
        (("Prod/eu-west-1",), False),  # EKS names are case-sensitive
        (("prod*",), False),  # no slash: never spills over into the region
        (("staging/*", "prod/eu-west-?"), True),
    ],
)
def test_allow_list_globs_cluster_and_region_separately(patterns: tuple[str, ...], allowed: bool) -> None:
    assert EksTarget("prod", "eu-west-1").allowed_by(patterns) is allowed


@pytest.mark.parametrize("text", ["prod", "/eu-west-1", "prod/", "a/b/c", ""])
def test_an_allow_pattern_must_be_cluster_slash_region(text: str) -> None:
    with pytest.raises(SpecError, match="is not CLUSTER/REGION"):
        allow_pattern(text)
