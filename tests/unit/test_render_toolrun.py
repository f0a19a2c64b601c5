"""The sealed runner kustomize (and Helm) run under: real processes, each failure worded once."""

from __future__ import annotations

import shutil

import pytest

from reconciler.render import toolrun
from reconciler.render.errors import RenderError

# PATH is /nonexistent inside a run (that is the point), so every command is named by its path.
SH, CAT, HEAD, SLEEP = (shutil.which(name) or f"/bin/{name}" for name in ("sh", "cat", "head", "sleep"))


def run(*, timeout: float = toolrun.TIMEOUT_SECONDS) -> toolrun.ToolRun:
    return toolrun.ToolRun(
        tool="demo",
        what="demo build of app",
        file="app/kustomization.yaml",
        max_output=1000,
        env=lambda home: {"DEMO_HOME": home},
        clean=lambda stderr: stderr.strip().replace("/secret/path", ""),
        too_large=lambda size: f"output of {size} bytes is too large",
        timeout=timeout,
    )


def test_stdout_is_returned_and_stdin_is_passed() -> None:
    assert toolrun.run_tool([SH, "-c", f"{CAT}; printf ' done'"], run=run(), stdin=b"kind: A") == "kind: A done"


def test_the_environment_is_sealed() -> None:
    out = toolrun.run_tool([SH, "-c", 'printf "%s|%s|%s|%s" "$PATH" "$HTTPS_PROXY" "$DEMO_HOME" "$HOME"'], run=run())
    path, proxy, demo_home, home = out.split("|")
    assert path == "/nonexistent"
    assert proxy == toolrun.DEAD_PROXY
    assert demo_home == home
    assert "reconciler-demo-" in home


def test_a_failed_run_names_the_file_and_shows_the_cleaned_stderr() -> None:
    with pytest.raises(RenderError) as e:
        toolrun.run_tool([SH, "-c", "echo 'bad input in /secret/path/x.yaml' >&2; exit 3"], run=run())
    assert str(e.value) == "app/kustomization.yaml: demo build of app failed: bad input in /x.yaml"


def test_a_run_past_its_timeout_is_killed() -> None:
    with pytest.raises(RenderError, match=r"demo build of app did not finish within 0s"):
        toolrun.run_tool([SLEEP, "10"], run=run(timeout=0.2))


def test_a_missing_binary_is_one_line() -> None:
    with pytest.raises(RenderError, match=r"cannot run demo \(/nonexistent/demo\): No such file or directory"):
        toolrun.run_tool(["/nonexistent/demo", "build"], run=run())


def test_output_over_the_limit_is_refused() -> None:
    with pytest.raises(RenderError, match=r"output of 2000 bytes is too large"):
        toolrun.run_tool([HEAD, "-c", "2000", "/dev/zero"], run=run())


def test_output_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(RenderError, match=r"demo output is not UTF-8 \(byte 1\)"):
        toolrun.run_tool([SH, "-c", r"printf 'a\377'"], run=run())
