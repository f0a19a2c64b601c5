"""`reconciler render` keeps ${...} verbatim unless --substitute or --substitute-from asks for substitution."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from reconciler import cli

CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: x
data:
  a: ${A}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: script
  annotations:
    kustomize.toolkit.fluxcd.io/substitute: disabled
data:
  run.sh: echo "${HOME}"
"""


def _render(tmp_path: Path, *args: str) -> tuple[int, str]:
    (tmp_path / "r").mkdir(exist_ok=True)
    (tmp_path / "r" / "x.yaml").write_text(CM)
    r = CliRunner().invoke(cli.cli, ["render", str(tmp_path / "r"), *args])
    return r.exit_code, r.output


def test_without_flags_everything_is_verbatim(tmp_path: Path) -> None:
    code, out = _render(tmp_path)
    assert code == 0, out
    assert "a: ${A}" in out
    assert 'run.sh: echo "${HOME}"' in out


def test_flags_turn_strict_substitution_on(tmp_path: Path) -> None:
    code, out = _render(tmp_path, "--substitute", "A=hello")
    assert code == 0, out
    assert "a: hello" in out
    assert 'run.sh: echo "${HOME}"' in out, "the Flux opt-out annotation is honoured"
    code, out = _render(tmp_path, "--substitute", "B=1")
    assert code == 2
    assert "variable ${A} is not defined and has no default" in out


def test_substitute_from_reads_name_value_lines_and_flags_win(tmp_path: Path) -> None:
    env = tmp_path / "vars.env"
    env.write_text("# cluster values\n\nA=from-file\nB=b\n")
    code, out = _render(tmp_path, "--substitute-from", str(env))
    assert code == 0, out
    assert "a: from-file" in out
    code, out = _render(tmp_path, "--substitute-from", str(env), "--substitute", "A=flag")
    assert "a: flag" in out
    env.write_text("not a pair\n")
    code, out = _render(tmp_path, "--substitute-from", str(env))
    assert code == 2
    assert "expected NAME=VALUE, got 'not a pair'" in out
