"""One duration parser for flags and spec fields: Kubernetes/Flux forms and a bare number of seconds."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from reconciler import cli
from reconciler.report import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("2m3s", 123),
        ("1h0m0s", 3600),
        ("30", 30),
        ("0.5", 0.5),
        (" 10s ", 10),
        ("0s", 0),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert durations.parse(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", " ", "s", "-5s", "5d", "10 s", "5s junk", "1e3", "5us", "h1", "nan", "1.s"])
def test_invalid_values_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(durations.DurationError) as e:
        durations.parse(text)
    assert str(e.value) == f"{text!r} is not a duration like 10s, 5m, 1h30m, 250ms or 1.5h, or a number of seconds"


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (5400, "1h30m"), (0.25, "250ms"), (15, "15s"), (3600, "1h"), (1.5, "1.5s")]
)
def test_to_text(seconds: float, text: str) -> None:
    assert durations.to_text(seconds) == text
    assert durations.parse(text) == pytest.approx(seconds)


def test_sync_timeout_takes_a_duration_and_refuses_others_naming_the_forms() -> None:
    """`reconciler sync --timeout 10s` was refused with "'10s' is not a valid float"."""
    r = CliRunner().invoke(cli.cli, ["sync", "--dir", "/nonexistent", "--wait", "--timeout", "ten"])
    assert r.exit_code == 2
    assert "Invalid value for '--timeout': 'ten' is not a duration like 10s, 5m, 1h30m" in r.output
    ok = CliRunner().invoke(cli.cli, ["sync", "--dir", "/nonexistent", "--wait", "--timeout", "10s"])
    assert "--timeout" not in ok.output, ok.output  # parsed; it fails later, on the missing folder


@pytest.mark.parametrize("command", [["sync"], ["run"], ["eks", "sync"]])
def test_help_shows_defaults_as_durations(command: list[str]) -> None:
    text = CliRunner().invoke(cli.cli, [*command, "--help"]).output
    want = {"sync": "[default: 5m]", "run": "[default: 15s]", "eks": "[default: 1h]"}[command[0]]
    assert want in " ".join(text.split()), text
