"""CEL for ValidatingAdmissionPolicy, offline, as close to the kube-apiserver's as we can make it.

The evaluator is cel-expr-python, Google's C++ CEL implementation (the conformant one,
with the ``strings`` and ``optional`` extensions that Kubernetes enables; the strings
functions of versions 1-2 -- ``format``, ``strings.quote``, ``join`` -- are celformat's, because
the C++ ``format`` prints other text than cel-go's).  On top of it this module adds what the
Kubernetes CEL environment has and the C++ one lacks, written in Python: the Kubernetes ``lists`` library
(``isSorted``, ``sum``, ``min``, ``max``; not ``indexOf``/``lastIndexOf`` on lists,
which the C++ runtime cannot overload next to the string functions of the same name), the ``regex``
library (``find``, ``findAll``) and the ``sets`` extension.  Anything else Kubernetes
has (quantity, url, ip, cidr, semver, the ``format.named`` library, two-variable comprehensions, ``authorizer``)
is an *undeclared reference* at compile time, so a policy using it fails to load: it is
refused, never silently evaluated differently.

Error wording: the apiserver reports a runtime error as ``expression 'E' resulted in
error: <cel-go text>``.  The C++ texts for the two errors policies actually hit (a
missing map key, an index out of range) are rewritten into cel-go's wording, so the
messages we print are the ones the cluster would print (the differential test checks it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]
from cel_expr_python.ext import ext_optional, ext_strings  # type: ignore[import-untyped]

from reconciler.policy import celformat, celformat_check

__all__ = ["CelError", "Compiled", "Environment", "EvalError", "activation"]

T = cel.Type


class CelError(Exception):
    """An expression that does not compile (or has the wrong result type): a load-time error."""


@dataclass(frozen=True)
class EvalError:
    """A runtime error of one expression, worded as the apiserver words it."""

    message: str


def _member(name: str, impl: Callable[..., Any], ret: Any, *params: Any) -> Any:
    return cel.Overload(f"k8s_{name}_{len(params)}", ret, list(params), is_member=True, impl=impl)


def _is_sorted(items: list[Any]) -> bool:
    return all(items[i] <= items[i + 1] for i in range(len(items) - 1))


def _sum(items: list[Any]) -> Any:
    return sum(items) if items else 0


def _min(items: list[Any]) -> Any:
    if not items:
        raise ValueError("min called on empty list")
    return min(items)


def _max(items: list[Any]) -> Any:
    if not items:
        raise ValueError("max called on empty list")
    return max(items)


_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _RE_CACHE.get(pattern)
    if compiled is None:
        compiled = _RE_CACHE[pattern] = re.compile(pattern)
    return compiled


def _find(s: str, pattern: str) -> str:
    m = _regex(pattern).search(s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str) -> list[str]:
    return [m.group(0) for m in _regex(pattern).finditer(s)]


def _find_all_n(s: str, pattern: str, n: int) -> list[str]:
    found = _find_all(s, pattern)
    return found if n < 0 else found[:n]


def _functions() -> list[Any]:
    """Declarations of the Kubernetes libraries the C++ runtime does not have."""
    dyn_list = T.List(T.DYN)
    return [
        cel.FunctionDecl("isSorted", [_member("isSorted", _is_sorted, T.BOOL, dyn_list)]),
        cel.FunctionDecl("sum", [_member("sum", _sum, T.DYN, dyn_list)]),
        cel.FunctionDecl("min", [_member("min", _min, T.DYN, dyn_list)]),
        cel.FunctionDecl("max", [_member("max", _max, T.DYN, dyn_list)]),
        cel.FunctionDecl("find", [_member("find", _find, T.STRING, T.STRING, T.STRING)]),
        cel.FunctionDecl(
            "findAll",
            [
                _member("findAll", _find_all, T.List(T.STRING), T.STRING, T.STRING),
                _member("findAll", _find_all_n, T.List(T.STRING), T.STRING, T.STRING, T.INT),
            ],
        ),
        # The strings extension is loaded at version 0 and its version 1-2 functions are ours:
        # the C++ ``format`` prints other text than cel-go's (see celformat), and a function
        # the extension declares cannot be overloaded again.
        cel.FunctionDecl(
            "format",
            [_member("format", celformat.format_string, T.STRING, T.STRING, dyn_list)],
        ),
        cel.FunctionDecl(
            "strings.quote", [cel.Overload("k8s_strings_quote", T.STRING, [T.STRING], impl=celformat.quote)]
        ),
        cel.FunctionDecl(
            "join",
            [
                _member("join", celformat.join, T.STRING, T.List(T.STRING)),
                _member("join", celformat.join, T.STRING, T.List(T.STRING), T.STRING),
            ],
        ),
        cel.FunctionDecl(
            "sets.contains",
            [cel.Overload("k8s_sets_contains", T.BOOL, [dyn_list, dyn_list], impl=lambda a, b: all(x in a for x in b))],
        ),
        cel.FunctionDecl(
            "sets.equivalent",
            [
                cel.Overload(
                    "k8s_sets_equivalent",
                    T.BOOL,
                    [dyn_list, dyn_list],
                    impl=lambda a, b: all(x in b for x in a) and all(x in a for x in b),
                )
            ],
        ),
        cel.FunctionDecl(
            "sets.intersects",
            [
                cel.Overload(
                    "k8s_sets_intersects", T.BOOL, [dyn_list, dyn_list], impl=lambda a, b: any(x in b for x in a)
                )
            ],
        ),
    ]


_KEY_NOT_FOUND = re.compile(r'^(?:NOT_FOUND: )?Key not found in map : "?(.*?)"?$')
_INDEX = re.compile(r"^(?:UNKNOWN: )?Index error: index=(-?\d+) size=\d+$")
_STATUS_PREFIX = re.compile(r"^[A-Z_]+: ")
_CONVERT = re.compile(r"^cannot convert (\w+) to (\w+)$")


def cel_go_wording(text: str) -> str:
    """A C++ runtime error text in the words cel-go (so the apiserver) uses for the same error."""
    text = text.strip()
    if m := _KEY_NOT_FOUND.match(text):
        return f"no such key: {m.group(1)}"
    if m := _INDEX.match(text):
        return f"index out of bounds: {m.group(1)}"
    text = _STATUS_PREFIX.sub("", text)
    if m := _CONVERT.match(text):
        return f"type conversion error from '{m.group(1)}' to '{m.group(2)}'"
    if text.startswith("No matching overloads found"):
        return "no such overload"
    if text == "divide by zero":
        return "division by zero"
    return text[:1].lower() + text[1:] if text.startswith("Type conversion error") else text


_GVK = T.Map(T.STRING, T.STRING)
REQUEST_FIELDS: dict[str, Any] = {
    "request.uid": T.STRING,
    "request.kind": _GVK,
    "request.resource": _GVK,
    "request.subResource": T.STRING,
    "request.requestKind": _GVK,
    "request.requestResource": _GVK,
    "request.requestSubResource": T.STRING,
    "request.name": T.STRING,
    "request.namespace": T.STRING,
    "request.operation": T.STRING,
    "request.dryRun": T.BOOL,
}


_TOP_NAME = re.compile(r"\b(object|oldObject|request|namespaceObject|params)\b|\bvariables\s*\.\s*([A-Za-z_]\w*)")


def references(source: str) -> frozenset[str]:
    """The activation names ``source`` may read (a superset: a name inside a string literal counts).

    Building an activation converts every value it holds, and the object is the big one: an
    expression over ``variables.containers`` alone is evaluated without converting the object.
    """
    out: set[str] = set()
    for m in _TOP_NAME.finditer(source):
        if m.group(1):
            out.add(m.group(1))
            if m.group(1) == "request":
                out.update(REQUEST_FIELDS)
        else:
            out.add(f"variables.{m.group(2)}")
    return frozenset(out)


class Compiled:
    """One compiled expression; ``evaluate`` returns a plain Python value or an :class:`EvalError`."""

    def __init__(self, source: str, program: Any) -> None:
        self.source = source
        self._program = program
        self.return_type: Any = program.return_type()
        self.refs = references(source)

    def evaluate(self, activation: Any) -> Any:
        try:
            value = self._program.eval(activation)
        except RuntimeError as e:  # cel-expr-python raises for some failures instead of an error value
            return EvalError(cel_go_wording(str(e)))
        if value.type() == T.ERROR:
            return EvalError(cel_go_wording(str(value.value())))
        return value.plain_value()


class Environment:
    """The variables one policy may use: ``object``, ``oldObject``, ``request``, ``namespaceObject``,
    ``params`` (only with a ``paramKind``, as on the apiserver) and ``variables.<name>`` (each
    declared with the result type of its own expression, so ``variables.ok`` can be a whole
    validation, as it can on the apiserver)."""

    def __init__(self, has_params: bool, variable_types: Mapping[str, Any] | None = None) -> None:
        decls: dict[str, Any] = {
            "object": T.DYN,
            "oldObject": T.DYN,
            "request": T.DYN,
            "namespaceObject": T.DYN,
        }
        # ``request`` is a typed object on the apiserver (``request.name`` is a string, so
        # ``'x' + request.name`` is a valid messageExpression); qualified declarations give its
        # fields the same types while ``request`` itself stays a map.
        decls.update(REQUEST_FIELDS)
        if has_params:
            decls["params"] = T.DYN
        for name, typ in (variable_types or {}).items():
            decls[f"variables.{name}"] = typ
        self._env = cel.NewEnv(
            variables=decls,
            extensions=[ext_strings.ExtStrings(0), ext_optional.ExtOptional()],
            functions=_functions(),
        )

    def compile(self, source: str, want: Sequence[Any] = ()) -> Compiled:
        """Compile ``source``; CelError (with the compiler's own text) if it does not, or if its
        result type is not one of ``want`` (the apiserver refuses a validation typed ``dyn``)."""
        try:
            program = self._env.compile(source)
        except RuntimeError as e:
            raise CelError(f"compilation failed: {_one_line(str(e))}") from None
        _check_literals(self._env, source)
        compiled = Compiled(source, program)
        if want and not any(compiled.return_type == w for w in want):
            names = " or ".join(_type_name(w) for w in want)
            raise CelError(f"must evaluate to {names} but got {_type_name(compiled.return_type)}")
        return compiled


_PLAIN_ENV: Any = None


def activation(data: Mapping[str, Any]) -> Any:
    """Bindings for evaluation.  An activation is not tied to the environment that compiled an
    expression, so one activation serves all the expressions of a policy at one stage."""
    global _PLAIN_ENV
    if _PLAIN_ENV is None:
        _PLAIN_ENV = cel.NewEnv()
    return _PLAIN_ENV.Activation(dict(data))


_LITERAL = r"""('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
_REGEX_ARG = re.compile(r"\.(?:matches|find|findAll)\(\s*" + _LITERAL + r"\s*[,)]")  # the whole argument
_FIND_ARG = re.compile(r"\.(?:find|findAll)\(\s*" + _LITERAL + r"\s*[,)]")
_TIME_ARG = re.compile(r"\b(duration|timestamp)\(\s*" + _LITERAL + r"\s*\)")


def _check_literals(env: Any, source: str) -> None:
    """Refuse invalid regex, duration and timestamp literals at load time, as the apiserver's
    compiler does (since 1.29), instead of failing every evaluation.  Each literal is checked
    by the CEL runtime itself, so the regex dialect is RE2's, as on the apiserver."""
    checks = [(m.group(1), f"''.matches({m.group(1)})", "regular expression") for m in _REGEX_ARG.finditer(source)]
    checks += [(m.group(2), f"{m.group(1)}({m.group(2)})", m.group(1)) for m in _TIME_ARG.finditer(source)]
    for literal, probe, what in checks:
        try:
            value = env.compile(probe).eval(data={})
        except RuntimeError:
            continue  # not a plain literal after all (e.g. inside a string): leave it to the compiler
        if value.type() == T.ERROR:
            raise CelError(f"invalid {what} {literal}: {cel_go_wording(str(value.value()))}")
    _check_format_calls(env, source)
    # find/findAll run on Python's re here (the C++ runtime has no such functions): a pattern
    # it cannot compile (RE2-only syntax such as \pL) is refused now, not at evaluation.
    for m in _FIND_ARG.finditer(source):
        try:
            pattern = env.compile(m.group(1)).eval(data={}).plain_value()
            re.compile(pattern)
        except RuntimeError:
            continue
        except re.error as e:
            raise CelError(f"regular expression {m.group(1)} is not supported by find/findAll offline: {e}") from None


def _check_format_calls(env: Any, source: str) -> None:
    """cel-go's compile-time check of ``'<literal>'.format([...])`` (see celformat_check.check_format)."""
    for call in celformat_check.literal_format_calls(source):
        try:
            text = env.compile(call.literal).eval(data={}).plain_value()
        except RuntimeError:
            continue
        kinds = [_static_kind(env, arg) for arg, _ in call.args]
        verdict = celformat_check.check_format(text, kinds)
        if verdict is not None:
            message, blame = verdict
            offset = call.call_at if blame is None else call.args[blame][1]
            line = source.count("\n", 0, offset) + 1
            column = offset - (source.rfind("\n", 0, offset) + 1) + 1
            raise CelError(f"compilation failed: at {line}:{column}: {message}")


def _static_kind(env: Any, expression: str) -> str:
    """The static type of one argument, as cel-go names it; ``dyn`` when it cannot be compiled
    alone (it uses a comprehension's variable, say) or is dynamically typed."""
    try:
        return celformat.type_name_of(env.compile(expression).return_type())
    except RuntimeError:
        return "dyn"


def _one_line(text: str) -> str:
    """The compiler's errors without the caret drawings, on one line (a log line, an Event)."""
    errors = []
    for line in text.splitlines():
        line = _STATUS_PREFIX.sub("", line.strip())
        if line.startswith("ERROR: "):
            line = line.removeprefix("ERROR: ").replace("<input>:", "at ", 1)
            errors.append(re.sub(r"\s*\(in container ''\)|\s*\[[A-Z_]+\]$", "", line))
    return "; ".join(errors) or re.sub(r"\s+", " ", text).strip()


def _type_name(t: Any) -> str:
    return str(t.name()).lower()


BOOL = T.BOOL
STRING = T.STRING
NULL = T.NULL
