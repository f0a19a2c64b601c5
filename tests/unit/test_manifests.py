"""Loading manifests: every error names the file and the document."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.render import Limits, manifests


def test_multi_document_with_empty_documents_and_lists() -> None:
    text = """
---
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
# only a comment
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}
  - {apiVersion: v1, kind: Secret, metadata: {name: c}}
"""
    got = manifests.load_text(text, "app.yaml")
    assert [(m.obj["kind"], m.obj["metadata"]["name"], m.doc) for m in got] == [
        ("ConfigMap", "a", 1),
        ("ConfigMap", "b", 3),
        ("Secret", "c", 3),
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x}\n", "invalid YAML at line 7, column 20"),
        ("- just\n- a list\n", "expected a mapping"),
        ("kind: ConfigMap\nmetadata: {name: x}\n", "field apiVersion is missing"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "ConfigMap: field metadata.name is missing"),
        ("apiVersion: v1\nkind: ConfigMap\n", "field metadata.name"),
    ],
)
def test_errors_name_file_and_document(text: str, needle: str) -> None:
    with pytest.raises(manifests.ManifestError) as e:
        manifests.load_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\n" + text, "dir/bad.yaml")
    assert str(e.value).startswith("dir/bad.yaml")
    assert needle in str(e.value)


def test_python_tags_are_refused() -> None:
    with pytest.raises(manifests.ManifestError, match=r"^evil\.yaml \(document 1\): tag .*python.* is not allowed"):
        manifests.load_text("!!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_load_path_walks_folders_in_order_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "b" / "z.yml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: z}\n")
    (tmp_path / "a.json").write_text('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}')
    (tmp_path / ".git" / "x.yaml").write_text("not: [valid")
    (tmp_path / "README.md").write_text("# not a manifest")
    got = manifests.load_path(tmp_path)
    assert [(m.file, m.obj["metadata"]["name"]) for m in got] == [("a.json", "a"), ("b/z.yml", "z")]


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(manifests.ManifestError, match="no such file"):
        manifests.load_path(tmp_path / "nope")


def test_json_files_are_parsed_as_json() -> None:
    text = '{\n\t"apiVersion": "v1",\n\t"kind": "ConfigMap",\n\t"metadata": {"name": "tabs"}\n}'
    assert manifests.load_text(text, "x.json")[0].obj["metadata"] == {"name": "tabs"}
    with pytest.raises(manifests.ManifestError, match=r"^x\.json: invalid JSON at line 1, column 2"):
        manifests.load_text("{oops}", "x.json")
    with pytest.raises(manifests.ManifestError, match="duplicate key 'kind'"):
        manifests.load_text('{"apiVersion": "v1", "kind": "A", "kind": "B", "metadata": {"name": "x"}}', "x.json")


def test_metadata_fields_must_have_kubernetes_types() -> None:
    with pytest.raises(manifests.ManifestError, match=r"ConfigMap/x: field metadata\.namespace is not a string"):
        manifests.load_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: 3}\n", "a.yaml")
    with pytest.raises(manifests.ManifestError, match=r"ConfigMap/x: field metadata\.labels is not a string map"):
        manifests.load_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: [a]}\n", "a.yaml")


def test_load_path_enforces_the_file_size_limit(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n" + "#" * 200)
    with pytest.raises(manifests.ManifestError, match=r"^big\.yaml: file is larger than the limit of 100 bytes"):
        manifests.load_path(tmp_path, Limits(max_file_bytes=100))


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x%2f", "a\\b"])
def test_an_object_name_that_would_change_its_request_path_is_refused(name: str) -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "team-a"}}
    with pytest.raises(manifests.ManifestError, match=r"metadata\.name"):
        manifests.check_object(obj, "cm.yaml", 0)
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok", "namespace": name}}
    with pytest.raises(manifests.ManifestError, match=r"metadata\.namespace"):
        manifests.check_object(obj, "cm.yaml", 0)


def test_a_file_starting_with_a_brace_is_a_json_stream_as_kubectl_reads_it() -> None:
    text = '\n{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"p": "a\\/b", "n": 1.0}}\n'
    got = manifests.load_text(text + '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}', "j.yaml")
    assert [m.obj["metadata"]["name"] for m in got] == ["a", "b"]
    assert got[0].obj["data"] == {"p": "a/b", "n": 1}
    with pytest.raises(
        manifests.ManifestError, match=r"^f\.yaml \(document 1\): invalid JSON at line 1, column 2: .*'---'"
    ):
        manifests.load_text("{apiVersion: v1, kind: ConfigMap, metadata: {name: flow}}\n", "f.yaml")
    assert manifests.load_text("---\n{apiVersion: v1, kind: ConfigMap, metadata: {name: flow}}\n", "f.yaml")


def test_every_document_with_items_is_a_list_whatever_its_kind() -> None:
    text = "apiVersion: v1\nkind: ConfigMapList\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: d1}}\n"
    assert [m.obj["metadata"]["name"] for m in manifests.load_text(text, "l.yaml")] == ["d1"]
    with pytest.raises(manifests.ManifestError, match=r"ConfigMapList: field items is not a list"):
        manifests.load_text("apiVersion: v1\nkind: ConfigMapList\nitems: {a: 1}\n", "l.yaml")
