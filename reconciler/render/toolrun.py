"""Running a pinned render tool (kustomize, helm) sealed off from the network, with its output capped.

Both tools are run the same way, and a difference between the two runs would be a hole: an
empty ``PATH`` (so no ``git`` or ``helm`` can be started behind our back), a throw-away
``HOME``, every proxy variable pointing at a closed loopback port (a stray HTTP request fails
on loopback instead of leaving the host), a timeout, stdout written to a file and refused past
a size limit.  Each failure becomes one :class:`RenderError` naming the file being rendered.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.render.errors import RenderError

TIMEOUT_SECONDS = 120.0
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def sealed_env(home: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a tool run: nothing inherited, proxies dead, ``extra`` on top."""
    env = {"PATH": "/nonexistent", "HOME": home, "LANG": "C.UTF-8", "NO_PROXY": "", "no_proxy": ""}
    env.update(extra)
    for key in PROXY_VARIABLES:
        env[key] = DEAD_PROXY
    return env


@dataclass(frozen=True)
class ToolRun:
    """One run of a pinned tool, and how its failures are worded."""

    tool: str  # the tool's name in messages ("kustomize"); no default
    what: str  # the run in messages ("kustomize build of apps"); no default
    file: str  # what the RenderError names (the kustomization, "chart name@version"); no default
    max_output: int  # bytes of stdout accepted; more is a RenderError; no default
    env: Callable[[str], Mapping[str, str]]  # the tool's own variables, given the throw-away HOME; no default
    clean: Callable[[str], str]  # stderr -> the message to show (paths made relative, secrets out); no default
    too_large: Callable[[int], str]  # output size -> why it is refused; no default
    timeout: float = TIMEOUT_SECONDS  # seconds before the run is killed; default 120


def run_tool(argv: Sequence[str], *, run: ToolRun, stdin: bytes | None = None, workdir: Path | None = None) -> str:
    """``argv`` (the binary first) run sealed as ``run`` says: its stdout, or RenderError.

    Its home and output file live in a fresh folder under ``workdir`` (default: the system's
    temporary folder), removed when it exits.
    """
    with tempfile.TemporaryDirectory(prefix=f"reconciler-{run.tool}-", dir=workdir) as home:
        out_path = Path(home) / "out.yaml"
        try:
            with out_path.open("wb") as out:
                proc = subprocess.run(
                    list(argv),
                    input=stdin,
                    stdin=subprocess.DEVNULL if stdin is None else None,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    env=sealed_env(home, run.env(home)),
                    cwd=home,
                    timeout=run.timeout,
                    check=False,
                )
        except subprocess.TimeoutExpired:
            raise RenderError(run.file, None, f"{run.what} did not finish within {run.timeout:.0f}s") from None
        except OSError as e:
            raise RenderError(run.file, None, f"cannot run {run.tool} ({argv[0]}): {e.strerror or e}") from None
        if proc.returncode != 0:
            why = run.clean(proc.stderr.decode("utf-8", "replace"))
            raise RenderError(run.file, None, f"{run.what} failed: {why}")
        size = out_path.stat().st_size
        if size > run.max_output:
            raise RenderError(run.file, None, run.too_large(size))
        try:
            return out_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise RenderError(run.file, None, f"{run.tool} output is not UTF-8 (byte {e.start})") from None
