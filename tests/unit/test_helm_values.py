"""Values merged in Flux HelmRelease's order (pure: plain data, no cluster)."""

from __future__ import annotations

import pytest

from reconciler.render.helm_values import (
    ValuesError,
    ValuesReference,
    merge_maps,
    merge_values,
    set_path,
    split_path,
    typed,
)


def test_merge_maps_merges_maps_and_replaces_everything_else() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": "keep", "c": {"d": 1}}
    out = merge_maps(base, {"a": {"y": [3], "z": True}, "c": None})
    assert out == {"a": {"x": 1, "y": [3], "z": True}, "b": "keep", "c": None}
    assert base["a"] == {"x": 1, "y": [1, 2]}  # inputs untouched


def test_order_is_files_then_references_in_order_then_inline() -> None:
    objects = {
        ("ConfigMap", "first"): {"values.yaml": "level: cm1\nonly_cm1: 1\nnested: {a: cm1, b: cm1}\n"},
        ("Secret", "second"): {"custom": "level: secret\nnested: {b: secret}\n"},
    }
    merged = merge_values(
        files=[("values-base.yaml", "level: file\nfrom_file: true\n")],
        references=[
            ValuesReference(kind="ConfigMap", name="first"),
            ValuesReference(kind="Secret", name="second", values_key="custom"),
        ],
        objects=objects,
        inline={"nested": {"c": "inline"}, "level": "inline"},
    )
    assert merged.values == {
        "level": "inline",
        "from_file": True,
        "only_cm1": 1,
        "nested": {"a": "cm1", "b": "secret", "c": "inline"},
    }
    assert merged.sensitive == frozenset({"secret"})  # strings from the Secret only


def test_target_path_sets_one_typed_value_and_marks_secret_values_sensitive() -> None:
    merged = merge_values(
        references=[
            ValuesReference(kind="Secret", name="db", values_key="password", target_path="auth.password"),
            ValuesReference(kind="ConfigMap", name="cfg", values_key="n", target_path="replicas"),
            ValuesReference(kind="ConfigMap", name="cfg", values_key="flag", target_path=r"annotations.a\.b/c"),
            ValuesReference(kind="ConfigMap", name="cfg", values_key="host", target_path="hosts[1].name"),
        ],
        objects={
            ("Secret", "db"): {"password": "hunter2-long"},
            ("ConfigMap", "cfg"): {"n": "3", "flag": "true", "host": "b.example"},
        },
        inline={"auth": {"user": "app"}},
    )
    assert merged.values == {
        "auth": {"password": "hunter2-long", "user": "app"},
        "replicas": 3,
        "annotations": {"a.b/c": True},
        "hosts": [None, {"name": "b.example"}],
    }
    assert merged.sensitive == frozenset({"hunter2-long"})


def test_optional_reference_to_a_missing_object_or_key_is_skipped() -> None:
    merged = merge_values(
        references=[
            ValuesReference(kind="Secret", name="absent", optional=True),
            ValuesReference(kind="ConfigMap", name="cfg", values_key="nokey", optional=True),
        ],
        objects={("ConfigMap", "cfg"): {"values.yaml": "a: 1"}},
    )
    assert merged.values == {}


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            ValuesReference(kind="Secret", name="absent"),
            r"valuesFrom\[0\] \(Secret/absent key 'values.yaml'\): "
            r"Secret 'absent' not found \(and the reference is not optional\)",
        ),
        (ValuesReference(kind="ConfigMap", name="cfg", values_key="x"), r"key 'x' not found"),
    ],
)
def test_required_reference_missing_is_an_error_naming_it(ref: ValuesReference, message: str) -> None:
    with pytest.raises(ValuesError, match=message):
        merge_values(references=[ref], objects={("ConfigMap", "cfg"): {"values.yaml": "a: 1"}})


def test_values_that_are_not_yaml_name_the_reference_but_not_the_content() -> None:
    with pytest.raises(ValuesError) as e:
        merge_values(
            references=[ValuesReference(kind="Secret", name="s")],
            objects={("Secret", "s"): {"values.yaml": "token: topsecret-value\n  bad: [indent"}},
        )
    msg = str(e.value)
    assert msg.startswith("valuesFrom[0] (Secret/s key 'values.yaml'): values are not valid YAML at line 2")
    assert "topsecret" not in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "a: 1\n---\nb: 2\n", "just a string"])
def test_values_must_be_one_mapping(text: str) -> None:
    with pytest.raises(ValuesError, match=r"values-prod.yaml: values must be one YAML mapping"):
        merge_values(files=[("values-prod.yaml", text)])


def test_empty_values_file_is_an_empty_map() -> None:
    assert merge_values(files=[("v.yaml", "")]).values == {}


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a", ["a"]),
        ("a.b.c", ["a", "b", "c"]),
        (r"a\.b.c", ["a.b", "c"]),
        ("list[0].name", ["list", 0, "name"]),
        ("m[2][1]", ["m", 2, 1]),
    ],
)
def test_split_path(path: str, parts: list[str | int]) -> None:
    assert split_path(path) == parts


@pytest.mark.parametrize("path", ["", ".a", "a..b", "a[x]", "a[1", "[0]"])
def test_split_path_refuses_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        split_path(path)


def test_target_path_error_names_the_reference() -> None:
    with pytest.raises(ValuesError, match=r"valuesFrom\[0\] .*targetPath: bad list index"):
        merge_values(
            references=[ValuesReference(kind="ConfigMap", name="c", values_key="k", target_path="a[x]")],
            objects={("ConfigMap", "c"): {"k": "v"}},
        )


def test_set_path_replaces_a_scalar_on_the_way() -> None:
    assert set_path({"a": "scalar"}, "a.b", 1) == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("false", False),
        ("null", None),
        ("42", 42),
        ("-1", -1),
        ("042", "042"),
        ("1.5", "1.5"),
        ("text", "text"),
    ],
)
def test_typed_follows_helm_set(raw: str, value: object) -> None:
    assert typed(raw) == value
