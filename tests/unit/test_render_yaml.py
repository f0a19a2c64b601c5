"""Safe YAML and the limits: hostile or oversized input fails fast and names the file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from test_render_support import FIXTURES, write

from reconciler.render import Limits, RenderError, RenderOptions, render, yaml_safe

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n"


def test_billion_laughs_fails_fast_and_names_the_file(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "billion-laughs.yaml", tmp_path / "laughs.yaml")
    start = time.monotonic()
    with pytest.raises(RenderError) as e:
        render(tmp_path, ".")
    assert time.monotonic() - start < 1.0
    assert str(e.value) == (
        "laughs.yaml (document 1): more than 100 YAML alias uses after expansion (billion-laughs guard) (line 2)"
    )


def test_alias_expansion_is_bounded_even_with_few_aliases() -> None:
    # One anchor of 1000 items used 99 times: under the alias limit, but 100,000 nodes.
    big = "base: &b [" + ", ".join(["x"] * 1000) + "]\n" + "".join(f"k{i}: *b\n" for i in range(99))
    with pytest.raises(yaml_safe.YAMLLimitError, match="expand to more than 50000 nodes"):
        yaml_safe.load_all(big, max_aliases=100, max_nodes=50_000)


def test_ordinary_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "d.yaml": """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web}
            spec:
              template:
                spec:
                  containers:
                    - &c {name: a, image: x, env: &env [{name: A, value: "1"}]}
                    - <<: *c
                      name: b
                      env: *env
            """
        },
    )
    (m,) = render(tmp_path, ".")
    a, b = m.obj["spec"]["template"]["spec"]["containers"]
    assert b == {"name": "b", "image": "x", "env": [{"name": "A", "value": "1"}]}
    assert a["env"] == b["env"]


def test_alias_limit_is_configurable(tmp_path: Path) -> None:
    write(tmp_path, {"x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: &n x}\ndata: {a: *n, b: *n}\n"})
    assert render(tmp_path, ".")[0].obj["data"] == {"a": "x", "b": "x"}
    with pytest.raises(RenderError, match=r"^x\.yaml \(document 1\): more than 1 YAML alias uses"):
        render(tmp_path, ".", RenderOptions(limits=Limits(max_aliases=1)))


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(yaml_safe.YAMLLimitError, match="recursive alias"):
        yaml_safe.load_all("a: &a [1, *a]\n", max_aliases=100, max_nodes=1000)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("data: !!binary /w==\n", "!!binary value is not UTF-8 text"),
        ("data: !!set {a, b}\n", "tag tag:yaml.org,2002:set is not allowed"),
        (
            "data: !!python/object/apply:os.system [true]\n",
            "python/object/apply:os.system is not",
        ),
        ("data: !local x\n", "tag !local is not allowed"),
        ("data: {a: 1, a: 2}\n", "duplicate key 'a' (line 4)"),
        ("data: {yes: 1, true: 2}\n", "duplicate key 'true' (line 4)"),
        ("data: {x: .nan}\n", ".nan cannot be represented in JSON (kubectl refuses it too) (line 4)"),
        ("data: {~: x}\n", "a null map key"),
        ("data: !!int x\n", "cannot decode !!str `x` as a !!int (line 4)"),
    ],
)
def test_unsafe_or_ambiguous_yaml_is_refused(tmp_path: Path, text: str, needle: str) -> None:
    write(tmp_path, {"x.yaml": CM % "x" + text})
    with pytest.raises(RenderError) as e:
        render(tmp_path, ".")
    assert str(e.value).startswith("x.yaml")
    assert needle in str(e.value)


def test_scalars_are_typed_as_kubernetes_types_them(tmp_path: Path) -> None:
    write(tmp_path, {"x.yaml": CM % "x" + "data:\n  day: 2024-01-31\n  time: 1:20\n  hex: 0x10\n  f: 1.5\n  b: true\n"})
    assert render(tmp_path, ".")[0].obj["data"] == {"day": "2024-01-31", "time": "1:20", "hex": 16, "f": 1.5, "b": True}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("=", "="),  # kube-prometheus's label-matcher enums; PyYAML's default loader cannot construct it
        ("<<", "<<"),
        ("y", True),
        ("Off", False),
        ("tRUE", "tRUE"),
        ("0777", 511),
        ("0o17", 15),
        ("08", 8),
        ("1e3", 1000),
        ("1.0", 1),
        ("1_000", 1000),
        ("18446744073709551615", 1.8446744073709552e19),
        ("0x1FFFFFFFFFFFFFFFFF", "0x1FFFFFFFFFFFFFFFFF"),
        ("1e400", "1e400"),
        ("!!binary aGVsbG8=", "hello"),
        ("!!float 1", 1),
        ("!!str 0x10", "0x10"),
    ],
)
def test_plain_scalars_mean_what_kubectl_reads(text: str, value: Any) -> None:
    (doc,) = yaml_safe.load_all(f"v: {text}\n", max_aliases=0, max_nodes=10)
    assert doc["v"] == value
    assert type(doc["v"]) is type(value)


def test_keys_become_strings_and_merges_apply_in_place_as_in_kubectl() -> None:
    (doc,) = yaml_safe.load_all(
        "k: {yes: a, n: b, 0x10: c, 1.5: d, 1e6: e, 2024-01-01: f}\n"
        "before: {a: 1, <<: {a: 2, b: 2}}\nafter: {<<: [{a: 1}, {a: 2, b: 2}], b: 3}\n",
        max_aliases=0,
        max_nodes=100,
    )
    assert doc["k"] == {"true": "a", "false": "b", "16": "c", "1.5": "d", "1e+06": "e", "2024-01-01": "f"}
    assert doc["before"] == {"a": 2, "b": 2}  # go-yaml v2 copies a merge where it stands
    assert doc["after"] == {"a": 1, "b": 3}


@pytest.mark.parametrize(
    ("text", "needle", "line"),
    [
        ("a: 1\n--- {b: 2}\n", "invalid document separator '--- {b: 2}'", 2),
        ("a: 1\n...\nb: 2\n", "more YAML follows the document end marker '...'", 3),
        ("%YAML 1.1\n---\na: 1\n", "YAML directives (%YAML, %TAG) cannot be used", 1),
    ],
)
def test_documents_are_split_where_kubectl_splits_them(text: str, needle: str, line: int) -> None:
    with pytest.raises(yaml_safe.YAMLLimitError) as e:
        yaml_safe.load_all(text, max_aliases=0, max_nodes=10)
    assert needle in str(e.value)
    assert e.value.line == line


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    write(tmp_path, {"big.yaml": CM % "big" + "data:\n" + "".join(f"  k{i}: {'v' * 100}\n" for i in range(100))})
    with pytest.raises(RenderError, match=r"^big\.yaml: file is \d+ bytes, over the limit of 4096 \(max_file_bytes\)"):
        render(tmp_path, ".", RenderOptions(limits=Limits(max_file_bytes=4096)))


def test_total_size_and_object_count_limits(tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path, {f"{i}.yaml": CM % f"c{i}"})
    assert len(render(tmp_path, ".")) == 5
    with pytest.raises(RenderError, match=r"^2\.yaml: the revision exceeds 150 bytes \(max_total_bytes\)"):
        render(tmp_path, ".", RenderOptions(limits=Limits(max_total_bytes=150)))
    with pytest.raises(RenderError, match=r"^3\.yaml: the revision has more than 3 objects \(max_objects\)"):
        render(tmp_path, ".", RenderOptions(limits=Limits(max_objects=3)))


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_bytes(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \xff}\n")
    with pytest.raises(RenderError, match=r"^x\.yaml: not UTF-8 text \(byte 48\)"):
        render(tmp_path, ".")


def test_dump_reads_back_to_the_same_object() -> None:
    obj = {"a": "multi\nline\n", "b": "${X}", "c": "1", "d": "yes", "e": {"f": [None, 1.5, True, "2024-01-01"]}}
    text = yaml_safe.dump(obj)
    assert "a: |\n" in text
    assert yaml_safe.load_all(text, max_aliases=0, max_nodes=100) == [obj]
