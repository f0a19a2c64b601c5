"""kustomize: remote references are refused before it runs, and it runs sandboxed."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from test_render_support import ROOT, kustomize_bin, write  # noqa: F401 (a fixture)

from reconciler.render import RenderError, kustomize, render

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n"


@pytest.fixture
def tripwire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake kustomize that records that it ran (and its environment): preflight must stop first."""
    mark = tmp_path / "kustomize-ran"
    fake = tmp_path / "fake-kustomize"
    fake.write_text(
        f"#!/bin/sh\nexport -p > {mark}\necho 'apiVersion: v1'\necho 'kind: ConfigMap'\necho 'metadata: {{name: x}}'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("RECONCILER_KUSTOMIZE", str(fake))
    return mark


@pytest.mark.parametrize(
    ("kustomization", "needle"),
    [
        ("resources: [https://example.com/app.yaml]", "resources[0]: remote reference 'https://example.com/app.yaml'"),
        ("resources: ['github.com/org/repo//deploy?ref=v1']", "resources[0]: remote reference 'github.com/org"),
        ("resources: ['git::https://host/org/repo.git']", "resources[0]: remote reference 'git::https://"),
        ("resources: ['git@github.com:org/repo.git']", "resources[0]: remote reference 'git@github.com"),
        ("resources: [example.com/org/repo]", "resources[0]: remote reference 'example.com/org/repo'"),
        ("bases: ['https://x.dev/base']", "bases[0]: remote reference"),
        ("components: ['ssh://git@host/repo.git']", "components[0]: remote reference"),
        ("crds: ['http://x.dev/crd.yaml']", "crds[0]: remote reference"),
        ("patches: [{path: 'https://x.dev/p.yaml'}]", "patches[0].path: remote reference"),
        ("configMapGenerator: [{name: g, files: ['k=https://x.dev/f']}]", "configMapGenerator[0].files[0]: remote"),
        ("openapi: {path: 'https://x.dev/schema.json'}", "openapi.path: remote reference"),
        (
            "transformers:\n- |\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata: {name: p}\n"
            "  path: https://x.dev/p.yaml\n",
            "transformers[0].path: remote reference 'https://x.dev/p.yaml'",
        ),
        (
            "helmCharts: [{name: nginx, repo: 'https://charts.example.com'}]",
            "helmCharts: Helm charts are not supported",
        ),
        ("resources: [missing.yaml]", "resources[0]: 'missing.yaml' does not exist (and is never fetched"),
        ("resources: [../../outside]", "resources[0]: '../../outside' points outside the repository"),
    ],
)
def test_remote_or_escaping_references_are_refused_before_kustomize_runs(
    tmp_path: Path, tripwire: Path, kustomization: str, needle: str
) -> None:
    root = write(tmp_path / "repo", {"app/kustomization.yaml": kustomization + "\n", "app/cm.yaml": CM})
    (tmp_path / "outside").mkdir()
    with pytest.raises(RenderError) as e:
        render(root, "app")
    assert str(e.value).startswith("app/kustomization.yaml: " + needle)
    assert not tripwire.exists()


def test_remote_reference_in_a_nested_base_is_found(tmp_path: Path, tripwire: Path) -> None:
    root = write(
        tmp_path,
        {
            "overlay/kustomization.yaml": "resources: [../base]\n",
            "base/kustomization.yaml": "resources: [cm.yaml, ../common]\n",
            "base/cm.yaml": CM,
            "common/kustomization.yaml": "components: ['https://github.com/org/comp']\n",
        },
    )
    with pytest.raises(RenderError, match=r"^common/kustomization\.yaml: components\[0\]: remote reference"):
        render(root, "overlay")
    assert not tripwire.exists()


def test_resource_symlinked_outside_the_repository_is_refused(tmp_path: Path, tripwire: Path) -> None:
    outside = write(tmp_path / "outside", {"secret.yaml": CM})
    root = write(tmp_path / "repo", {"app/kustomization.yaml": "resources: [linked.yaml]\n"})
    (root / "app" / "linked.yaml").symlink_to(outside / "secret.yaml")
    with pytest.raises(RenderError, match=r"resources\[0\]: 'linked\.yaml' points outside the repository"):
        render(root, "app")
    assert not tripwire.exists()


def test_oversized_referenced_file_is_refused(tmp_path: Path, tripwire: Path) -> None:
    from reconciler.render import Limits, RenderOptions

    root = write(tmp_path, {"app/kustomization.yaml": "resources: [cm.yaml]\n", "app/cm.yaml": CM + "#" * 5000})
    with pytest.raises(RenderError, match=r"resources\[0\]: 'cm\.yaml' is larger than the limit of 4096 bytes"):
        render(root, "app", RenderOptions(limits=Limits(max_file_bytes=4096)))


def test_kustomize_runs_without_path_home_or_a_way_out(tmp_path: Path, tripwire: Path) -> None:
    root = write(tmp_path, {"app/kustomization.yaml": "resources: [cm.yaml]\n", "app/cm.yaml": CM})
    (m,) = render(root, "app")
    assert m.file == "app/kustomization.yaml"
    env = tripwire.read_text()
    assert "PATH='/nonexistent'" in env or 'PATH="/nonexistent"' in env
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "ALL_PROXY"):
        assert re.search(rf"""{var}=['"]?http://127\.0\.0\.1:9""", env), var
    assert "KUBECONFIG" not in env
    assert "GIT_ALLOW_PROTOCOL='none'" in env or 'GIT_ALLOW_PROTOCOL="none"' in env


@pytest.mark.usefixtures("kustomize_bin")
def test_local_references_of_every_kind_pass_the_preflight(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "base/kustomization.yaml": "resources: [cm.yaml]\n",
            "base/cm.yaml": CM,
            "comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
            "commonLabels: {component: 'yes'}\n",
            "app/kustomization.yaml": """
            resources: [../base]
            components: [../comp]
            configMapGenerator:
              - name: gen
                files: [conf=settings.ini]
                literals: [URL=https://example.com/not-a-reference]
            patches:
              - path: patch.yaml
            """,
            "app/settings.ini": "a=1\n",
            "app/patch.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {patched: 'true'}\n",
        },
    )
    got = {m.obj["metadata"]["name"].split("-")[0]: m.obj for m in render(root, "app")}
    assert got["cm"]["data"] == {"patched": "true"}
    assert got["cm"]["metadata"]["labels"] == {"component": "yes"}
    assert got["gen"]["data"] == {"conf": "a=1\n", "URL": "https://example.com/not-a-reference"}


def test_looks_remote() -> None:
    for remote in [
        "https://x/y",
        "github.com/a/b",
        "gitlab.com/a/b?ref=v1",
        "git::ssh://h/r",
        "git@h:r.git",
        "x.io:8080/a",
    ]:
        assert kustomize.looks_remote(remote), remote
    for local in ["../base", "base", "my.app", "deploy.yaml", "./overlays/prod"]:
        assert not kustomize.looks_remote(local), local


def test_script_and_module_pin_the_same_version() -> None:
    script = (ROOT / "scripts" / "build-tool").read_text()
    assert f"VERSION=${{KUSTOMIZE_VERSION:-{kustomize.KUSTOMIZE_VERSION}}}" in script
    assert f"PKG={kustomize.KUSTOMIZE_MODULE}\n" in script


@pytest.mark.usefixtures("kustomize_bin")
def test_build_script_warm_call_is_fast_and_prints_the_binary_last() -> None:
    binary = os.environ["RECONCILER_KUSTOMIZE"]  # set by the fixture
    start = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-tool"), "kustomize"], capture_output=True, text=True, check=True
    )
    assert time.monotonic() - start < 1.0
    assert proc.stdout.strip().splitlines()[-1] == binary
    assert re.search(rf"/gitops-reconciler/bin/kustomize-{kustomize.KUSTOMIZE_VERSION}-go[0-9.]+/kustomize$", binary)
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout
    assert kustomize.KUSTOMIZE_VERSION in version


def test_build_script_failure_names_module_and_version(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "KUSTOMIZE_VERSION": "v5.0.0-nonexistent", "GOPROXY": "off"}
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-tool"), "kustomize"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "sigs.k8s.io/kustomize/kustomize/v5@v5.0.0-nonexistent" in proc.stderr.splitlines()[-1]
