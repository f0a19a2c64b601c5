"""The soak's own parts (bench/soak.py), checked so that its "0 mismatches" means something.

A soak whose generator made invalid commits it called valid, or whose comparison could not see a
missing object, would report zero divergences whatever the controller did.  So, for any seed:
every commit it calls valid is valid by the rules the controller enforces (each file parses, no
object is defined twice, no object is in both GitSyncs, every namespaced object's namespace exists
or is declared by the same GitSync, no custom resource without its CRD), an invalid commit adds
exactly one file and changes nothing else, and the same seed gives the same commits.  And the
comparison reports a missing, an extra and a changed object.
"""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability import Recorder

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import soak  # (bench/soak.py)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
N = 30
PROPS = settings(max_examples=N, deadline=None, derandomize=True)
COMMITS = 30


def _apply(tree: dict[str, str], files: dict[str, str | None]) -> dict[str, str]:
    out = dict(tree)
    for path, text in files.items():
        if text is None:
            out.pop(path, None)
        else:
            out[path] = text
    return out


@functools.cache
def _parse(text: str) -> list[dict[str, Any]]:
    """A file of the generator: JSON documents after '---' lines (the C loader: thousands per example)."""
    return [d for d in yaml.load_all(text, Loader=_LOADER) if d]


def _objects(tree: dict[str, str], sync: str) -> list[dict[str, Any]]:
    return [d for p, t in sorted(tree.items()) if p.startswith(f"{sync}/") for d in _parse(t)]


def _check_valid(tree: dict[str, str]) -> None:
    ids: dict[tuple[str, str, str], str] = {}
    for sync in soak.SYNCS:
        docs = _objects(tree, sync)
        spaces = {soak.BASE_NS} | {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
        crds = {d["spec"]["names"]["kind"] for d in docs if d["kind"] == "CustomResourceDefinition"}
        for d in docs:
            key = soak._key(d)
            assert key not in ids, f"{key} in {ids.get(key)} and {sync}"
            ids[key] = sync
            if d["kind"] in ("ConfigMap",) or d["kind"].startswith("Thing"):
                assert d["metadata"]["namespace"] in spaces, f"{key}: namespace not declared by {sync}"
            if d["kind"].startswith("Thing"):
                assert d["kind"] in crds, f"{key} without its CRD in {sync}"
            if d["kind"] == "ConfigMap":
                assert "forbidden" not in d["data"], f"{key} violates the soak policy in a valid commit"


@PROPS
@given(seed=st.integers(0, 2**30), share=st.sampled_from([0.0, 0.3, 0.6]))
def _generator_is_honest(seed: int, share: float) -> None:
    fleet = soak.Fleet(random.Random(seed))  # noqa: S311 - a seed, not a secret
    tree: dict[str, str] = {}
    for _ in range(COMMITS):
        change = fleet.next_change(share)
        new = _apply(tree, change.files)
        if change.breaks:
            added = set(new) - set(tree)
            assert len(added) == 1, added
            assert {p: t for p, t in new.items() if p not in added} == tree, "an invalid commit changed more"
        else:
            _check_valid(new)
        tree = new


@PROPS
@given(seed=st.integers(0, 2**30))
def _same_seed_same_commits(seed: int) -> None:
    a, b = soak.Fleet(random.Random(seed)), soak.Fleet(random.Random(seed))  # noqa: S311
    for _ in range(10):
        assert a.next_change(0.3) == b.next_change(0.3)


def test_the_soak_generator_calls_valid_only_what_is_valid(reliability: Recorder) -> None:
    _generator_is_honest()
    _same_seed_same_commits()
    reliability.record(
        area="property",
        fault=f"the soak's generator: {N} seeds x {COMMITS} commits, invalid share 0/0.3/0.6",
        expected="valid commits are valid (parse, unique ids, namespaces and CRDs declared); an invalid one adds "
        "one file only; the same seed gives the same commits",
        observed=f"held in {N} seeds",
        tried=N * COMMITS,
    )


class FakeKubectl:
    def __init__(self, live: dict[str, dict[soak.Key, Any]]) -> None:
        self.state = live

    def live(self, thing_kinds: set[str]) -> dict[str, dict[soak.Key, Any]]:
        return self.state


def test_the_comparison_sees_missing_extra_and_changed_objects() -> None:
    cm, other = ("ConfigMap", "soak-base", "x"), ("ConfigMap", "soak-base", "y")
    want: dict[str, dict[soak.Key, Any]] = {"a": {cm: {"k": "1"}}, "b": {}}
    same = FakeKubectl({"a": {cm: {"k": "1"}}, "b": {}})
    assert soak._compare(same, want, deadline=0) == ([], 0)  # type: ignore[arg-type]
    missing = FakeKubectl({"a": {}, "b": {}})
    diffs, lost = soak._compare(missing, want, deadline=0)  # type: ignore[arg-type]
    assert lost == 1
    assert "missing=[('ConfigMap', 'soak-base', 'x')]" in diffs[0]
    extra = FakeKubectl({"a": {cm: {"k": "1"}}, "b": {other: {}}})
    assert "extra=[('ConfigMap', 'soak-base', 'y')]" in soak._compare(extra, want, deadline=0)[0][0]  # type: ignore[arg-type]
    changed = FakeKubectl({"a": {cm: {"k": "2"}}, "b": {}})
    assert "changed=[('ConfigMap', 'soak-base', 'x')]" in soak._compare(changed, want, deadline=0)[0][0]  # type: ignore[arg-type]
