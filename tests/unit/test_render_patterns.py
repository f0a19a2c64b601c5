"""Patch target patterns: RE2, anchored as kustomize anchors them, bounded in length, and linear
in time whatever the tenant writes (a backtracking engine takes hours on the evil patterns)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from reconciler.gitsync.spec import SpecError, parse
from reconciler.render.patterns import MAX_PATTERN_BYTES, anchored
from reconciler.render.selectors import Target, parse_selector


def _cm(name: str, ns: str | None = "apps") -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if ns is not None:
        md["namespace"] = ns
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md}


@pytest.mark.parametrize(
    ("pattern", "text", "hit"),
    [
        ("web", "web", True),
        ("web", "web-1", False),  # anchored at the end
        ("web", "my-web", False),  # and at the start
        ("web-.*", "web-1", True),
        ("a|b", "b", True),  # the alternation is grouped before anchoring
        ("a|b", "ab", False),
        ("web", "web\n", False),  # $ is the end of the text, as in Go, not "before a final newline"
        ("[[:alpha:]]+", "abc", True),  # RE2/Go class syntax
    ],
)
def test_anchored_semantics(pattern: str, text: str, hit: bool) -> None:
    assert anchored(pattern, field="f").matches(text) is hit


def test_empty_fields_match_everything_including_cluster_scoped() -> None:
    t = Target.parse({})
    assert t.matches(_cm("anything"), cluster_scoped=False)
    assert t.matches({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, cluster_scoped=True)
    assert Target.parse({"name": "", "kind": ""}).matches(_cm("x"), cluster_scoped=False)


def test_target_fields_select_like_kustomize() -> None:
    t = Target.parse({"kind": "Config.*", "name": "web|db", "namespace": "default", "version": "v1", "group": ""})
    assert t.matches(_cm("web", None), cluster_scoped=False)  # no namespace: "default" for matching
    assert not t.matches(_cm("web"), cluster_scoped=False)  # namespace apps
    assert not t.matches(_cm("webx", None), cluster_scoped=False)
    assert not Target.parse({"group": "apps"}).matches(_cm("web"), cluster_scoped=False)


@pytest.mark.parametrize("evil", ["(a|aa)*c", "(a*)*c", "(a+)+c", "(.*a){20}c"])
def test_evil_patterns_match_in_linear_time(evil: str) -> None:
    name = "a" * 250  # a valid object name; Python's re needs years for (a|aa)*c on it
    t0 = time.monotonic()
    assert not anchored(evil, field="target.name").matches(name)
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ({"name": "web-("}, "spec.patches[0].target.name: invalid regular expression 'web-(' (RE2 syntax): missing )"),
        ({"namespace": "(?<=a)b"}, "spec.patches[0].target.namespace: invalid regular expression"),
        ({"kind": r"(a)\1"}, "spec.patches[0].target.kind: invalid regular expression"),  # no back-references
        (
            {"name": "a" * (MAX_PATTERN_BYTES + 1)},
            "spec.patches[0].target.name: regular expression is 1025 bytes, over the limit of 1024",
        ),
        (
            {"labelSelector": "a in (" + "x," * 600 + "y)"},
            "spec.patches[0].target.labelSelector: selector is 1208 bytes, over the limit of 1024",
        ),
    ],
)
def test_bad_or_long_pattern_is_a_spec_error_naming_the_field(target: dict[str, str], needle: str) -> None:
    obj = {
        "metadata": {"name": "g", "namespace": "t"},
        "spec": {"source": {"git": {"url": "https://x/r.git"}}, "patches": [{"patch": "a: 1", "target": target}]},
    }
    with pytest.raises(SpecError) as e:
        parse(obj)
    assert str(e.value).startswith(needle), str(e.value)


def test_a_pattern_at_the_limit_is_fine() -> None:
    assert anchored("a" * MAX_PATTERN_BYTES, field="f").matches("a" * MAX_PATTERN_BYTES)


def test_blank_heavy_label_selector_parses_in_linear_time() -> None:
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="cannot parse"):
        parse_selector(" " * 1000 + "!", "target.labelSelector")
    assert parse_selector("  app = web ,  !legacy  ", "s")[0].key == "app"
    assert time.monotonic() - t0 < 0.5
