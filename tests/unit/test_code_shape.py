"""The size and call-shape rules of docs/architecture.md, measured with ``ast`` so they cannot drift.

A function longer than a screen hides its steps; a module longer than 500 lines hides its
parts; a function of four or more parameters called positionally is a call site nobody can
read (kopf's rule: keyword-only).  Each rule names every offender, not just the first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "reconciler"
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 500
MAX_POSITIONAL_WHEN_FOUR = 2  # f(a, b, *, c, d): the subject(s) positional, the options named

# A module that is one table of per-kind rules may be longer, if its first lines say why
# (the marker below must appear in its docstring).
TABLE_MARKER = "one table of per-kind rules"

# Signatures a library fixes for us: their parameter shape is not ours to choose.
FIXED_SIGNATURES = {
    "convert",  # click.ParamType.convert(value, param, ctx)
    "emit",  # logging.Handler.emit
    "format",  # logging.Formatter.format
    "log_message",  # http.server.BaseHTTPRequestHandler.log_message
    "__exit__",
}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"


def _length(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """From the ``def`` line to the last line of the body; decorators are not the function's length."""
    assert fn.end_lineno is not None
    return fn.end_lineno - fn.lineno + 1


def _positional(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    """(positional parameters, all named parameters), neither counting self/cls."""
    pos = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if pos and pos[0] in ("self", "cls"):
        pos = pos[1:]
    return len(pos), len(pos) + len(fn.args.kwonlyargs)


def long_functions() -> list[str]:
    out = []
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            if _length(fn) > MAX_FUNCTION_LINES:
                out.append(f"{_where(path, fn)} {fn.name}: {_length(fn)} lines")
    return out


def long_modules() -> list[str]:
    out = []
    for path in _modules():
        text = path.read_text()
        lines = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if lines > MAX_MODULE_LINES and TABLE_MARKER not in doc:
            out.append(f"{path.relative_to(PACKAGE.parent)}: {lines} lines")
    return out


def positional_calls() -> list[str]:
    out = []
    for path in _modules():
        for fn in _functions(ast.parse(path.read_text())):
            if fn.name in FIXED_SIGNATURES:
                continue
            positional, total = _positional(fn)
            if total >= 4 and positional > MAX_POSITIONAL_WHEN_FOUR:
                out.append(f"{_where(path, fn)} {fn.name}: {positional} positional of {total}")
    return out


def duplicate_class_names() -> list[str]:
    """Two classes of one name (``Outcome`` in sync and in gitsync) make every import a guess."""
    seen: dict[str, list[str]] = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                seen.setdefault(node.name, []).append(_where(path, node))
    return [f"{name}: {', '.join(places)}" for name, places in sorted(seen.items()) if len(places) > 1]


def test_no_function_is_longer_than_a_screen() -> None:
    assert long_functions() == []


def test_no_module_is_longer_than_500_lines_unless_it_is_one_table() -> None:
    assert long_modules() == []


def test_functions_of_four_or_more_parameters_take_them_by_keyword() -> None:
    assert positional_calls() == []


def test_no_two_classes_share_a_name() -> None:
    assert duplicate_class_names() == []


@pytest.mark.parametrize(
    ("source", "rule", "expected"),
    [
        ("def f(a, b, c, d):\n    pass\n", positional_calls, 1),
        ("def f(a, b, *, c, d):\n    pass\n", positional_calls, 0),
        ("class K:\n    def m(self, a, b, *, c):\n        pass\n", positional_calls, 0),
        ("def f():\n" + "    x = 1\n" * 60, long_functions, 1),
        ("def f():\n" + "    x = 1\n" * 59, long_functions, 0),
        ("class A:\n    pass\n\n\nclass A:\n    pass\n", duplicate_class_names, 1),
        ("class A:\n    pass\n\n\nclass B:\n    pass\n", duplicate_class_names, 0),
    ],
)
def test_the_rules_catch_what_they_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, rule: object, expected: int
) -> None:
    """The measures themselves, on made-up modules: a rule that cannot fail is no rule."""
    pkg = tmp_path / "reconciler"
    pkg.mkdir()
    (pkg / "m.py").write_text(source)
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", pkg)
    assert callable(rule)
    assert len(rule()) == expected
