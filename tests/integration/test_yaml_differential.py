"""Differential test: every file in tests/fixtures/yaml-differential reads here as kubectl reads it.

The oracle is the real kubectl (1.32, sigs.k8s.io/yaml v1.4.0 = go-yaml v2) against the
test control plane: ``kubectl create --dry-run=client --validate=false -o json -f FILE``
prints each object exactly as kubectl parsed it and would send it (client-side: nothing is
created, no schema check gets in the way of odd values).  Our side is ``render()``, the
function every sync calls.  Objects are compared as canonical JSON, so ``true`` vs ``1`` and
``1`` vs ``1.0`` differ; integers beyond int64 are read as the float64 the API server makes
of them, on both sides.

Three kinds of fixture, by file name:
* ``NN-*.yaml``: kubectl accepts; our objects equal its objects exactly.
* ``reject-*.yaml``: kubectl refuses; we refuse too, naming the file, document and line.
* ``stricter-*.yaml``: kubectl accepts but silently loses or changes data (a duplicate key
  keeps one value, a document after ``...`` vanishes, an unknown tag is dropped); we refuse,
  naming the line, as kustomize does for duplicate keys.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.render import RenderError, render

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "yaml-differential"
NAMESPACE = "yaml-differential"  # kubectl adds it to namespaced objects; removed before comparing
_INT64 = range(-(2**63), 2**63)

ACCEPTED = sorted(p.name for p in FIXTURES.glob("[0-9]*.yaml"))

# file -> (document, line or None, words of our error)
REFUSED: dict[str, tuple[int, int | None, str]] = {
    "reject-bad-base64.yaml": (1, 6, "!!binary value contains invalid base64 data"),
    "reject-dashes-line.yaml": (2, 5, "invalid document separator '----'"),
    "reject-directive.yaml": (1, 1, "YAML directives (%YAML, %TAG) cannot be used"),
    "reject-flow-style-read-as-json.yaml": (1, None, "invalid JSON at line 1, column 2"),
    "reject-infinity.yaml": (2, 10, "-.inf cannot be represented in JSON"),
    "reject-json-number-out-of-range.yaml": (1, None, "a number is beyond the range of a 64-bit float"),
    "reject-merge-of-scalar.yaml": (1, 6, "map merge requires map or sequence of maps as the value"),
    "reject-nan.yaml": (1, 6, ".nan cannot be represented in JSON"),
    "reject-null-key.yaml": (1, 6, "a null map key"),
    "reject-separator-with-content.yaml": (2, 4, "invalid document separator '--- {apiVersion"),
    "reject-sequence-key.yaml": (1, 6, "invalid map key: a sequence cannot be a key"),
    "reject-slash-escape.yaml": (1, 6, "found unknown escape character '\\/'"),
    "reject-tab-indentation.yaml": (1, None, "invalid YAML at line 6, column 1"),
    "reject-uint64-key.yaml": (1, 6, "map key 18446744073709551615 is beyond int64"),
    "reject-unclosed-flow.yaml": (1, None, "invalid YAML at line 5, column 16"),
    "reject-wrong-int-tag.yaml": (1, 6, "cannot decode !!str `eighty` as a !!int"),
}
STRICTER: dict[str, tuple[int, int | None, str]] = {
    "stricter-document-after-end-marker.yaml": (1, 7, "more YAML follows the document end marker '...'"),
    "stricter-duplicate-after-conversion.yaml": (1, 7, "duplicate key 'true'"),
    "stricter-duplicate-key.yaml": (1, 7, "duplicate key 'mode'"),
    "stricter-json-duplicate-key.yaml": (1, None, "duplicate key 'a'"),
    "stricter-local-tag.yaml": (1, 6, "tag !Ref is not allowed"),
    "stricter-python-tag.yaml": (1, 5, "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"),
    "stricter-set-tag.yaml": (1, 5, "tag tag:yaml.org,2002:set is not allowed"),
}


def _number(text: str) -> int | float:
    value = int(text)
    return value if value in _INT64 else float(text)


def canonical(obj: Any) -> str:
    """JSON with sorted keys and API-server numbers: equal text means equal objects, types included."""
    return json.dumps(json.loads(json.dumps(obj), parse_int=_number), sort_keys=True)


def kubectl(cluster: Any, path: Path) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    binary = shutil.which("kubectl")
    assert binary, "kubectl is needed for the differential test (it is the oracle)"
    r = subprocess.run(
        [
            binary,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "create",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "json",
            "-n",
            NAMESPACE,
            "-f",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    objs, decoder, i = [], json.JSONDecoder(), 0
    while (i := len(r.stdout) - len(r.stdout[i:].lstrip())) < len(r.stdout):
        obj, i = decoder.raw_decode(r.stdout, i)
        if obj.get("metadata", {}).get("namespace") == NAMESPACE:
            del obj["metadata"]["namespace"]
        objs.append(obj)
    return r, objs


def ours(name: str, tmp_path: Path) -> list[dict[str, Any]]:
    shutil.copy(FIXTURES / name, tmp_path / name)
    return [m.obj for m in render(tmp_path, ".")]


def test_every_fixture_has_an_expectation() -> None:
    names = {p.name for p in FIXTURES.glob("*.yaml")}
    assert names == set(ACCEPTED) | set(REFUSED) | set(STRICTER)
    assert len(ACCEPTED) >= 15


@pytest.mark.parametrize("name", ACCEPTED)
def test_we_read_what_kubectl_reads(cluster: Any, tmp_path: Path, name: str) -> None:
    r, theirs = kubectl(cluster, FIXTURES / name)
    assert r.returncode == 0, r.stderr
    mine = ours(name, tmp_path)
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, theirs, strict=True):
        assert canonical(a) == canonical(b)


def _refused(name: str, tmp_path: Path, expected: tuple[int, int | None, str]) -> None:
    doc, line, needle = expected
    with pytest.raises(RenderError) as e:
        ours(name, tmp_path)
    message = str(e.value)
    assert message.startswith(f"{name} (document {doc}): "), message
    assert needle in message
    if line is not None:
        assert message.endswith(f"(line {line})"), message


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_we_refuse_what_kubectl_refuses(cluster: Any, tmp_path: Path, name: str) -> None:
    r, _ = kubectl(cluster, FIXTURES / name)
    assert r.returncode != 0, r.stdout
    assert "error" in r.stderr
    _refused(name, tmp_path, REFUSED[name])


@pytest.mark.parametrize("name", sorted(STRICTER))
def test_where_kubectl_silently_loses_data_we_refuse(cluster: Any, tmp_path: Path, name: str) -> None:
    r, _ = kubectl(cluster, FIXTURES / name)
    assert r.returncode == 0, r.stderr  # the point: kubectl takes it without a word
    _refused(name, tmp_path, STRICTER[name])
