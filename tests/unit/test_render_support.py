"""Shared helpers of the render tests (imported by the other ``test_render_*`` modules).

The kustomize binary is real: the session fixture builds it with ``scripts/build-tool kustomize``
(seconds when cached) and points the renderer at it.  If it cannot be built, every test
that needs it ERRORS: a missing tool must never look like a pass or a skip.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "render"


def build_kustomize() -> str:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "build-tool"), "kustomize"], capture_output=True, text=True, timeout=1200, check=False
    )
    assert proc.returncode == 0, f"scripts/build-tool kustomize failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kustomize_bin() -> Iterator[str]:
    """The pinned kustomize, built once; RECONCILER_KUSTOMIZE points the renderer at it."""
    path = build_kustomize()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECONCILER_KUSTOMIZE", path)
        yield path


def write(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> dedented text) under ``root``; returns ``root``."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def test_fixture_tree_is_present() -> None:
    assert (FIXTURES / "repo" / "apps" / "prod" / "kustomization.yaml").is_file()
