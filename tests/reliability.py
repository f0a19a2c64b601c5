"""Records what the reliability tests tried and what they saw, for docs/reliability.md.

Why a recorder rather than test names: issue 17 asks for figures — each fault or bad input,
how often it was tried, what was expected, what was observed, how many objects were lost.  A
test that injects a fault calls ``reliability.record(...)`` once per trial; the lines go to
``.reliability/results.jsonl`` (one JSON object per line, truncated at the start of each
pytest session) and ``scripts/reliability-report`` turns them into the page.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("RECONCILER_RELIABILITY_RESULTS", ROOT / ".reliability" / "results.jsonl"))
_lock = threading.Lock()


@dataclass(frozen=True)
class Trial:
    """One injected fault or bad input and its outcome."""

    test: str  # pytest node id that ran it
    area: str  # e.g. "api-server", "git", "s3", "crash", "soak", "safety-rule", "property"
    fault: str  # what was done, e.g. "SIGKILL after 3 of 8 applies"
    expected: str  # the promise, e.g. "live state equals git at old or new revision"
    observed: str  # what the test saw (it asserts expected; observed records the figures)
    passed: bool  # did the observation meet the expectation
    lost: int = 0  # objects of ours missing or wrongly deleted after the trial
    tried: int = 1  # how many times this trial ran inside the one call


class Recorder:
    def __init__(self, test: str) -> None:
        self._test = test

    def record(
        self,
        *,
        area: str,
        fault: str,
        expected: str,
        observed: str,
        passed: bool = True,
        lost: int = 0,
        tried: int = 1,
    ) -> None:
        trial = Trial(self._test, area, fault, expected, observed, passed, lost, tried)
        with _lock:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            with RESULTS.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(trial), sort_keys=True) + "\n")


def pytest_sessionstart(session: pytest.Session) -> None:
    # xdist workers would each truncate; this suite runs in one process.
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("", encoding="utf-8")


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Recorder:
    """``reliability.record(area=..., fault=..., expected=..., observed=..., lost=0)`` per trial."""
    return Recorder(request.node.nodeid)


# --- attack tests (issue 17: the security issue's attack tests are counted too) --------------
# A module that holds attack tests says so once: ``pytestmark = pytest.mark.attack(area="tenancy")``.
# Each of its tests is then one trial, recorded from its real outcome (no test body changes):
# the fault is the test's name and the first line of its docstring, passed is pytest's verdict.

ATTACK_EXPECTED = "refused: nothing outside the tenant's namespace and identity is read or written"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "attack(area): a security attack test, recorded for docs/reliability.md")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    marker = item.get_closest_marker("attack")
    if marker is None or call.when != "call":
        return
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    func = getattr(item, "function", None)
    doc = ((func.__doc__ if func is not None else None) or "").strip().splitlines()
    name = item.name.removeprefix("test_").replace("_", " ")
    fault = f"{name}: {doc[0].strip()}" if doc else name
    observed = "refused, as the test asserts" if report.passed else f"NOT refused: {report.longreprtext[-300:]}"
    Recorder(item.nodeid).record(
        area=marker.kwargs.get("area", "attack"),
        fault=fault,
        expected=ATTACK_EXPECTED,
        observed=observed,
        passed=bool(report.passed),
    )
