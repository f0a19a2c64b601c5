"""py-spy for bench/mttp.py: sample the running controller, then rank frames.

py-spy reads the process from outside (no hook in the product, every thread sampled, idle
threads left out), so what it ranks is where the controller spends CPU. Frames are ranked
by function (file and name, line numbers dropped): *own* counts samples where the function
is the innermost frame; *cumulative* counts samples where it is anywhere on the stack.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def _py_spy() -> str:
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    return found


def attach(*, pid: int, out: str, idle: bool = False) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` at 100 Hz into ``out`` (collapsed stacks) until :func:`finish`.
    ``idle``: waiting threads too, so the ranking says where the workers' wall time goes."""
    argv = [_py_spy(), "record", "--pid", str(pid), "--format", "raw", "--rate", "100", "--nonblocking", "-o", out]
    argv += ["--idle", "--threads"] if idle else []
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(spy: subprocess.Popen[bytes]) -> None:
    """py-spy writes its file when the target exits or when interrupted; SIGINT it, then wait."""
    if spy.poll() is None:
        spy.send_signal(2)
    try:
        spy.wait(60)
    except subprocess.TimeoutExpired:
        spy.kill()


def _frame(raw: str) -> str:
    name, _, where = raw.partition(" (")
    return f"{name} ({_LINE.sub(')', '(' + where)[1:]}" if where else name


def rank(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            cumulative[f] += n
    return own, cumulative, total


def summarize(path: Path, *, top: int) -> None:
    if not path.exists():
        print(f"no profile at {path}")
        return
    own, cumulative, total = rank(path)
    print(f"profile: {total} samples (100 Hz, busy threads only) in {path}")
    for title, counter in (("own", own), ("cumulative", cumulative)):
        print(f"top {top} by {title} samples:")
        for frame, n in counter.most_common(top):
            print(f"  {n:>7} {100 * n / max(1, total):5.1f}%  {frame[:150]}")
