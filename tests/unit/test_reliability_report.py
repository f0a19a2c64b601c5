"""scripts/reliability-report: the page says what the recorded trials say, failures included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "reliability-report"


def _trial(**over: object) -> str:
    base = {"test": "t::a", "area": "soak", "fault": "f", "expected": "e", "observed": "o", "passed": True}
    return json.dumps(base | over)


def _run(tmp_path: Path, lines: list[str], *extra: str) -> tuple[int, str]:
    results, out = tmp_path / "results.jsonl", tmp_path / "page.md"
    results.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--results", str(results), "--out", str(out), *extra],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.returncode, out.read_text() if out.exists() else proc.stderr


def test_rows_are_grouped_by_area_and_repeats_are_summed(tmp_path: Path) -> None:
    code, page = _run(
        tmp_path,
        [
            _trial(tried=20, lost=0),
            _trial(tried=30, lost=2, passed=False, observed="2 lost"),
            _trial(area="property", fault="yaml", test="t::b", tried=100),
        ],
    )
    assert code == 0
    assert "| [soak](#soak) | 1 | 50 | 1 | 2 |" in page
    assert "| [property](#property) | 1 | 100 | 0 | 0 |" in page
    assert "| f | 50 | e | 2 lost | 2 | **FAIL** | `t::a` |" in page
    assert page.index("## soak") < page.index("## property")
    assert "scripts/reliability-report" in page.splitlines()[2]


def test_check_fails_when_a_trial_failed(tmp_path: Path) -> None:
    assert _run(tmp_path, [_trial()], "--check")[0] == 0
    assert _run(tmp_path, [_trial(passed=False)], "--check")[0] == 1


def test_a_line_that_is_not_a_trial_is_refused(tmp_path: Path) -> None:
    code, err = _run(tmp_path, ['{"area": "soak"}'])
    assert code != 0
    assert "results.jsonl:1: not a trial line" in err
