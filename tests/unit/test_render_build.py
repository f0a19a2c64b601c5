"""render(): folders, kustomizations, order, confinement to the checkout, identities."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_render_support import FIXTURES, kustomize_bin, write  # noqa: F401 (a fixture)

from reconciler.render import Manifest, ManifestError, RenderError, RenderOptions, render

REPO = FIXTURES / "repo"
VARS = RenderOptions(substitute={"CLUSTER_NAME": "eu-1"})  # the apps use ${CLUSTER_NAME}


def ids(ms: list[Manifest]) -> list[tuple[str, str, str]]:
    return [(m.file, m.obj["kind"], m.obj["metadata"]["name"]) for m in ms]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_plain_folder_loads_every_manifest_in_name_order_and_skips_hidden() -> None:
    got = render(REPO, "infra")
    assert ids(got) == [
        ("infra/00-namespace.yaml", "Namespace", "infra"),
        ("infra/crds/widgets.yaml", "CustomResourceDefinition", "widgets.example.dev"),
        ("infra/crds/widgets.yaml", "CustomResourceDefinition", "gadgets.example.dev"),
        ("infra/objects.yaml", "Widget", "big"),
        ("infra/objects.yaml", "Gadget", "small"),
        ("infra/objects.yaml", "ConfigMap", "settings"),
        ("infra/rbac.json", "ClusterRole", "reader"),  # tab-indented JSON, read as JSON
    ]
    assert [m.doc for m in got] == [1, 1, 2, 1, 2, 3, 1]
    assert render(REPO, "./infra/") == got  # stable, and the path spelling does not matter


@pytest.mark.usefixtures("kustomize_bin")
def test_overlay_with_strategic_merge_patch_on_one_container() -> None:
    got = render(REPO, "./apps/prod", VARS)
    assert ids(got) == [
        ("apps/prod/kustomization.yaml", "Service", "web"),
        ("apps/prod/kustomization.yaml", "Deployment", "web"),
    ]
    dep = got[1].obj
    assert dep["metadata"]["namespace"] == "prod"
    app = container(dep, "app")
    assert app["image"] == "nginx:1.28"
    # merged by name: LOG_LEVEL replaced, CLUSTER kept; the sidecar untouched
    assert {e["name"]: e["value"] for e in app["env"]} == {"CLUSTER": "eu-1", "LOG_LEVEL": "warn"}
    assert app["ports"] == [{"containerPort": 80}]
    assert container(dep, "sidecar") == {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]}


@pytest.mark.usefixtures("kustomize_bin")
def test_folder_with_nested_kustomizations_builds_each_and_loads_nothing_raw() -> None:
    got = render(REPO, "apps", VARS)
    assert [m.file for m in got] == ["apps/base/kustomization.yaml"] * 2 + ["apps/prod/kustomization.yaml"] * 2
    assert [m.doc for m in got] == [1, 2, 1, 2]
    namespaces = [m.obj["metadata"].get("namespace") for m in got]
    assert namespaces == [None, None, "prod", "prod"]


@pytest.mark.usefixtures("kustomize_bin")
def test_whole_repository_mixes_kustomize_and_plain_files() -> None:
    got = render(REPO, ".", VARS)
    assert [m.file for m in got][:4] == ["apps/base/kustomization.yaml"] * 2 + ["apps/prod/kustomization.yaml"] * 2
    assert got[4].file == "infra/00-namespace.yaml"
    assert len(got) == 11


@pytest.mark.usefixtures("kustomize_bin")
def test_path_to_a_single_file_and_to_a_kustomization_file() -> None:
    assert ids(render(REPO, "infra/rbac.json")) == [("infra/rbac.json", "ClusterRole", "reader")]
    assert [m.file for m in render(REPO, "apps/prod/kustomization.yaml", VARS)] == ["apps/prod/kustomization.yaml"] * 2


def test_non_object_yaml_in_a_plain_folder_is_an_error_naming_the_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {"app/ok.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", "app/values.yaml": "replicas: 3\n"},
    )
    with pytest.raises(RenderError) as e:
        render(tmp_path, "app")
    assert str(e.value) == "app/values.yaml (document 1): field apiVersion is missing or not a string"


def test_invalid_yaml_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"bad.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n"})
    with pytest.raises(RenderError, match=r"^bad\.yaml \(document 1\): invalid YAML at line 5, column 1: "):
        render(tmp_path, ".")


def test_render_errors_are_manifest_errors_for_old_callers(tmp_path: Path) -> None:
    write(tmp_path, {"bad.yaml": "- 1\n"})
    with pytest.raises(ManifestError, match="expected a mapping"):
        render(tmp_path, ".")


def test_duplicate_identity_names_both_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a/web.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n",
            "b/other.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n"
            "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: web, namespace: prod}\n",
        },
    )
    with pytest.raises(RenderError) as e:
        render(tmp_path, ".")
    msg = str(e.value)
    assert msg.startswith("b/other.yaml (document 2): Deployment/prod/web: duplicate object")
    assert "a/web.yaml (document 1)" in msg
    assert "b/other.yaml (document 2)" in msg


def test_same_name_in_other_namespace_or_group_is_not_a_duplicate(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: one}\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: two}\n---\n"
            "apiVersion: example.dev/v1\nkind: ConfigMap\nmetadata: {name: a, namespace: one}\n",
        },
    )
    assert len(render(tmp_path, ".")) == 3


def test_target_namespace_can_create_duplicates_and_they_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "one.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: one}\n",
            "two.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: two}\n",
        },
    )
    with pytest.raises(RenderError, match=r"two\.yaml .*ConfigMap/apps/a: duplicate object: defined in one\.yaml"):
        render(tmp_path, ".", RenderOptions(target_namespace="apps"))


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "/etc", "./a/../.."])
def test_path_escaping_root_is_refused(tmp_path: Path, path: str) -> None:
    root = write(tmp_path / "repo", {"a/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
    with pytest.raises(RenderError, match="root of the revision"):
        render(root, path)


def test_symlink_escaping_root_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"})
    root = write(tmp_path / "repo", {"a/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RenderError, match=r"^linkdir: path escapes the root of the revision \(through a symlink\)"):
        render(root, "linkdir")
    with pytest.raises(RenderError, match=r"^linkdir: symlink points outside the root of the revision"):
        render(root, ".")
    (root / "linkdir").unlink()
    (root / "a" / "s.yaml").symlink_to(outside / "secret.yaml")
    with pytest.raises(RenderError, match=r"^a/s\.yaml: symlink points outside"):
        render(root, "a")


def test_symlinks_inside_root_are_followed_and_loops_refused(tmp_path: Path) -> None:
    root = write(tmp_path, {"real/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
    (root / "apps").mkdir()
    (root / "apps" / "x.yaml").symlink_to(root / "real" / "x.yaml")
    assert ids(render(root, "apps")) == [("apps/x.yaml", "ConfigMap", "x")]
    (root / "real" / "loop").symlink_to(root / "real", target_is_directory=True)
    with pytest.raises(RenderError, match=r"^real/loop: symlink loop"):
        render(root, "real")


def test_missing_path_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"^nope: no such file or directory"):
        render(tmp_path, "nope")
    with pytest.raises(RenderError, match="checkout directory does not exist"):
        render(tmp_path / "gone", ".")


@pytest.mark.usefixtures("kustomize_bin")
def test_kustomize_failure_names_the_kustomization_and_kustomize_message(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: p.yaml\n",
            "app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            "app/p.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-there}\ndata: {x: y}\n",
        },
    )
    with pytest.raises(RenderError) as e:
        render(tmp_path, "app")
    msg = str(e.value)
    assert msg.startswith("app/kustomization.yaml: kustomize build of app failed: ")
    assert "not-there" in msg
    assert str(tmp_path) not in msg  # paths are relative to the checkout


def test_missing_kustomize_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"kustomization.yaml": "resources: []\n"})
    monkeypatch.delenv("RECONCILER_KUSTOMIZE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(
        RenderError, match=r"^kustomization\.yaml: kustomize is needed but not installed: run `make tools`"
    ):
        render(tmp_path, ".")


@pytest.mark.usefixtures("kustomize_bin")
def test_kustomize_from_the_cache_is_found_without_path_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.render import kustomize

    cache = tmp_path / "cache"
    target = cache / "gitops-reconciler" / "bin" / f"kustomize-{kustomize.KUSTOMIZE_VERSION}-go0.0" / "kustomize"
    target.parent.mkdir(parents=True)
    shutil.copy(os.environ["RECONCILER_KUSTOMIZE"], target)  # set by the kustomize_bin fixture
    monkeypatch.delenv("RECONCILER_KUSTOMIZE")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert kustomize.find_binary() == str(target)
    assert os.access(target, os.X_OK)
