"""targetNamespace: namespaced objects move, cluster-scoped ones (built-in or CRD-defined) stay."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_render_support import FIXTURES, kustomize_bin, write  # noqa: F401 (a fixture)

from reconciler.render import RenderError, RenderOptions, render


def test_target_namespace_skips_builtin_and_crd_cluster_scoped_kinds() -> None:
    got = render(FIXTURES / "repo", "infra", RenderOptions(target_namespace="team-a"))
    ns = {f"{m.obj['kind']}/{m.obj['metadata']['name']}": m.obj["metadata"].get("namespace") for m in got}
    assert ns == {
        "Namespace/infra": None,
        "CustomResourceDefinition/widgets.example.dev": None,
        "CustomResourceDefinition/gadgets.example.dev": None,
        "Widget/big": None,  # its CRD in the same render says scope: Cluster
        "Gadget/small": "team-a",  # its CRD says Namespaced
        "ConfigMap/settings": "team-a",
        "ClusterRole/reader": None,
    }


@pytest.mark.usefixtures("kustomize_bin")
def test_target_namespace_overrides_kustomize_namespace() -> None:
    opts = RenderOptions(target_namespace="team-a", substitute={"CLUSTER_NAME": "x"})
    got = render(FIXTURES / "repo", "apps/prod", opts)
    assert [m.obj["metadata"]["namespace"] for m in got] == ["team-a", "team-a"]


def test_unknown_kind_without_crd_is_treated_as_namespaced(tmp_path: Path) -> None:
    write(tmp_path, {"x.yaml": "apiVersion: other.dev/v1\nkind: Thing\nmetadata: {name: t}\n"})
    assert render(tmp_path, ".", RenderOptions(target_namespace="n"))[0].obj["metadata"]["namespace"] == "n"


def test_invalid_target_namespace_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\n"})
    with pytest.raises(RenderError, match=r"^targetNamespace: 'Team_A' is not a valid namespace name"):
        render(tmp_path, ".", RenderOptions(target_namespace="Team_A"))


def test_input_objects_are_not_mutated(tmp_path: Path) -> None:
    write(tmp_path, {"x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t, namespace: a}\n"})
    first = render(tmp_path, ".")
    render(tmp_path, ".", RenderOptions(target_namespace="b"))
    assert first[0].obj["metadata"]["namespace"] == "a"
