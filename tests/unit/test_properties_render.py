"""Properties of the renderer's guards over untrusted input: YAML limits, substitution, paths.

Each holds for every input hypothesis builds, not just the examples the other unit tests
name: the YAML loader ends in data or in one of its two refusals (never another exception,
never unbounded work), alias expansion past the limit is always refused and below it never;
substitution expands exactly what it is given and nothing else; a path from a GitSync or a
remote tree never resolves outside the checkout.  Derandomized so CI failures reproduce.
"""

from __future__ import annotations

import contextlib
import decimal
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from reliability import Recorder

from reconciler.render import yaml_safe
from reconciler.render.build import confine
from reconciler.render.errors import RenderError
from reconciler.render.substitute import SubstitutionError, substitute_text
from reconciler.source.snapshot import UnsafeTreeError, safe_parts

N = 100
PROPS = settings(max_examples=N, deadline=None, derandomize=True)
LIMITS = {"max_aliases": 100, "max_nodes": 20_000}

# --- YAML -------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
keys = st.text(min_size=1, max_size=12)
data = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)
# Text with the characters that matter to a YAML parser, so syntax errors are common.
yaml_text = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.sampled_from(
            ["a", ": ", "- ", "\n", "  ", "&x ", "*x", "[", "]", "{", "}", "---\n", "...\n", "!!", "#", '"']
        ),
        max_size=60,
    ).map("".join),
)


def _same(a: Any, b: Any) -> bool:
    """Equality where -0.0 == 0.0 and 1 == 1.0 would hide nothing: types must match too."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return isinstance(b, float) and math.isclose(a, b, rel_tol=1e-15, abs_tol=0.0)
    return type(a) is type(b) and bool(a == b)


def _as_api_server_reads(value: Any) -> Any:
    """What JSON decoding does on the server: a float with an integral value that fits int64 is an int."""
    if isinstance(value, dict):
        return {k: _as_api_server_reads(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_api_server_reads(v) for v in value]
    if isinstance(value, float) and value.is_integer() and -(2**63) <= int(decimal.Decimal(repr(value))) < 2**63:
        return int(decimal.Decimal(repr(value)))
    return value


@PROPS
@given(doc=data)
def _dump_then_load_is_identity(doc: Any) -> None:
    assert _same(yaml_safe.load_all(yaml_safe.dump(doc), **LIMITS), [_as_api_server_reads(doc)])


@PROPS
@given(text=yaml_text)
def _any_text_gives_data_or_a_refusal(text: str) -> None:
    # Any other exception escapes and fails the property.
    with contextlib.suppress(yaml.YAMLError, yaml_safe.YAMLLimitError):
        yaml_safe.load_all(text, **LIMITS)


def _laughs(width: int, depth: int) -> str:
    lines = ["l0: &a0 lol"]
    for i in range(1, depth + 1):
        lines.append(f"l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _expanded_aliases(width: int, depth: int) -> int:
    """Alias uses after expansion: level i holds ``width`` aliases to level i-1, each copying its aliases."""
    per_level, total = 0, 0
    for _ in range(depth):
        per_level = width * (1 + per_level)
        total += per_level
    return total


@PROPS
@given(width=st.integers(1, 12), depth=st.integers(1, 9), limit=st.integers(1, 5000))
def _alias_limit_is_exact(width: int, depth: int, limit: int) -> None:
    text = _laughs(width, depth)
    expanded = _expanded_aliases(width, depth)
    if expanded > limit:
        with pytest.raises(yaml_safe.YAMLLimitError, match="alias"):
            yaml_safe.load_all(text, max_aliases=limit, max_nodes=10**9)
    else:
        assert yaml_safe.load_all(text, max_aliases=limit, max_nodes=10**9)[0]["l0"] == "lol"


def test_yaml_dump_then_load_is_identity(reliability: Recorder) -> None:
    _dump_then_load_is_identity()
    reliability.record(
        area="property",
        fault="random nested data (null, bool, int64, float, unicode text) written by yaml_safe.dump",
        expected="read back as the same values and types (integral floats as ints, as the API server reads them)",
        observed=f"held in {N} cases",
        tried=N,
    )


def test_yaml_any_text_gives_data_or_a_refusal(reliability: Recorder) -> None:
    _any_text_gives_data_or_a_refusal()
    reliability.record(
        area="property",
        fault="random text and YAML-syntax soup (anchors, flows, tags, separators)",
        expected="data, a YAMLError or a YAMLLimitError; no other exception",
        observed=f"held in {N} cases",
        tried=N,
    )


def test_yaml_alias_limit_is_exact(reliability: Recorder) -> None:
    _alias_limit_is_exact()
    reliability.record(
        area="property",
        fault="billion-laughs documents, width 1..12 x depth 1..9, alias limit 1..5000",
        expected="refused exactly when expanded alias uses exceed the limit",
        observed=f"held in {N} cases",
        tried=N,
    )


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_is_refused_or_read_not_a_crash(depth: int) -> None:
    for text in ("[" * depth + "]" * depth, "".join(f"{' ' * i}k:\n" for i in range(depth)) + " " * depth + "v\n"):
        # A RecursionError or MemoryError would escape and fail the test.
        with contextlib.suppress(yaml.YAMLError, yaml_safe.YAMLLimitError):
            yaml_safe.load_all(text, **LIMITS)


# --- substitution ---------------------------------------------------------------------------

_WORD = "_abcxyzABCXYZ"
names = st.builds(str.__add__, st.sampled_from(_WORD), st.text(alphabet=_WORD + "0189", max_size=8))
values = st.text(max_size=20)
plain = st.text(alphabet=st.characters(blacklist_characters="$"), max_size=30)
no_brace = st.text(alphabet=st.characters(blacklist_characters="$}"), max_size=20)


@PROPS
@given(text=plain, variables=st.dictionaries(names, values, max_size=3))
def _text_without_dollar_is_untouched(text: str, variables: dict[str, str]) -> None:
    assert substitute_text(text, variables) == (text, [])


@PROPS
@given(name=names, value=values, before=plain, after=plain)
def _reference_becomes_its_value(name: str, value: str, before: str, after: str) -> None:
    out, used = substitute_text(f"{before}${{{name}}}{after}", {name: value})
    assert (out, used) == (f"{before}{value}{after}", [name])


@PROPS
@given(name=names, default=no_brace, op=st.sampled_from([":=", ":-"]))
def _default_applies_to_undefined_and_empty(name: str, default: str, op: str) -> None:
    ref = f"${{{name}{op}{default}}}"
    assert substitute_text(ref, {})[0] == default
    assert substitute_text(ref, {name: ""})[0] == default
    assert substitute_text(ref, {name: "set"})[0] == "set"


@PROPS
@given(name=names, variables=st.dictionaries(names, values, max_size=3))
def _escape_is_literal_and_undefined_fails(name: str, variables: dict[str, str]) -> None:
    assert substitute_text(f"$${{{name}}}", variables) == (f"${{{name}}}", [])
    if name not in variables:
        with pytest.raises(SubstitutionError) as e:
            substitute_text(f"${{{name}}}", variables)
        assert e.value.variable == name


@PROPS
@given(
    text=st.lists(st.sampled_from(["$", "{", "}", "$$", "${", "A", ":=", ":-", " ", "\n", "x"]), max_size=20).map(
        "".join
    ),
    secret=st.text(min_size=8, max_size=16, alphabet="abcdefghijklmnop"),
)
def _any_text_expands_or_refuses_without_the_value(text: str, secret: str) -> None:
    refusal = ""
    try:
        substitute_text(text, {"A": secret})
    except SubstitutionError as e:
        refusal = str(e)
    assert secret not in refusal, "a variable's value leaked into an error"


def test_substitution_properties(reliability: Recorder) -> None:
    for check, fault, expected in [
        (_text_without_dollar_is_untouched, "random text without '$'", "returned unchanged"),
        (_reference_becomes_its_value, "${NAME} between random text, random value", "exactly the value in place"),
        (_default_applies_to_undefined_and_empty, "${NAME:=d} / ${NAME:-d}", "default when undefined or empty"),
        (_escape_is_literal_and_undefined_fails, "$${NAME}; ${UNDEFINED}", "literal ${NAME}; error naming NAME"),
        (
            _any_text_expands_or_refuses_without_the_value,
            "'$', '{', '}', ':=' soup",
            "expands or refuses; no value in errors",
        ),
    ]:
        check()
        reliability.record(
            area="property", fault=f"substitution: {fault}", expected=expected, observed=f"held in {N} cases", tried=N
        )


# --- paths ------------------------------------------------------------------------------------

segments = st.sampled_from(["a", "b", "..", ".", "", "out", "loop", "up", "/", "a/..", "%2e%2e", "\x00"])
rel_paths = st.lists(segments, max_size=8).map("/".join)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with a sibling outside it, and symlinks that try to reach it."""
    base = tmp_path_factory.mktemp("confine")
    (base / "secret").mkdir()
    root = base / "checkout"
    (root / "a" / "b").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "out").symlink_to(base / "secret")  # absolute, outside
    (root / "up").symlink_to("..")  # relative, climbs out
    (root / "a" / "loop").symlink_to("../a")  # inside: allowed
    return root


def test_confine_refuses_a_nul_byte_as_a_render_error(tree: Path) -> None:
    """Regression (found by the property below): a NUL raised ValueError out of confine()."""
    with pytest.raises(RenderError, match="cannot resolve path"):
        confine(tree, "a/\x00")


def test_confine_never_leaves_the_checkout(tree: Path, reliability: Recorder) -> None:
    root = tree.resolve()

    @PROPS
    @given(path=rel_paths, absolute=st.booleans())
    def check(path: str, absolute: bool) -> None:
        raw = ("/" + path) if absolute else path
        try:
            real = confine(tree, raw)
        except RenderError:
            return
        assert not absolute, f"absolute path {raw!r} accepted"
        assert real.is_relative_to(root), f"{raw!r} resolved to {real}, outside {root}"

    check()
    reliability.record(
        area="property",
        fault="GitSync path: random '..', '.', '/', symlinks out (absolute and relative), absolute paths",
        expected="confine() refuses or resolves inside the checkout",
        observed=f"held in {N} cases",
        tried=N,
    )


@PROPS
@given(
    path=st.one_of(
        st.text(max_size=40),
        rel_paths,
        st.lists(st.sampled_from(["a", ".git", ".GIT", "..", "\\"]), max_size=5).map("/".join),
    )
)
def _safe_parts_stay_inside(path: str) -> None:
    try:
        parts = safe_parts(path)
    except UnsafeTreeError:
        return
    joined = os.path.normpath(PurePosixPath("/snapshot", *parts))
    assert joined.startswith("/snapshot/"), f"{path!r} -> {joined}"
    assert all(p.lower() != ".git" for p in parts)


def test_remote_tree_paths_stay_inside_the_snapshot(reliability: Recorder) -> None:
    _safe_parts_stay_inside()
    reliability.record(
        area="property",
        fault="git tree / S3 key: random text, '..', '.git' in any case, backslashes, NUL",
        expected="safe_parts() refuses or every part joins inside the snapshot, never as .git",
        observed=f"held in {N} cases",
        tried=N,
    )
