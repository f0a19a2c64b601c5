# ruff: noqa: RUF001, E501 -- expected texts are cel-go output verbatim (a real multiplication sign; long messages on one line)
"""format(), strings.quote and join as the kube-apiserver evaluates them.

Every expected text below was produced by cel-go v0.26.0 with golang.org/x/text v0.31.0 (the
versions Kubernetes 1.35.4 builds with), strings extension version 2 as Kubernetes configures
it: the expressions were run through a small Go program against those modules.  The
differential test (tests/integration/test_policy_differential.py) checks a subset against the
real apiserver.
"""

from __future__ import annotations

import pytest

from reconciler.policy import celenv, celformat

EXPECTED = [
    ("'%e'.format([1234.5])", "1.234500×10⁰³"),
    ("'%s'.format([{'a': 1}])", '{"a":1}'),
    ("'%.2f and %f'.format([1.0 / 3.0, 2.5])", "0.33 and 2.500000"),
    ("'%f'.format([1234567.891])", "1,234,567.891000"),
    ("'%.0f'.format([2.5])", "2"),
    ("'%.0f'.format([3.5])", "4"),
    ("'%.3e'.format([0.000123])", "1.230000×10⁻⁰⁴"),
    ("'%e'.format([0.0])", "0.000000×10⁰⁰"),
    ("'%e'.format([-1e100])", "-1.000000×10¹⁰⁰"),
    ("'%e'.format([1e-300])", "1.000000×10⁻³⁰⁰"),
    ("'%f'.format([-0.0])", "0.000000"),
    ("'%f'.format(['NaN'])", "NaN"),
    ("'%f'.format(['Infinity'])", "∞"),
    ("'%e'.format(['-Infinity'])", "    -∞"),
    ("'%f'.format([1e20])", "100,000,000,000,000,000,000.000000"),
    ("'%.10f'.format([1.0/3.0])", "0.3333333333"),
    ("'%s'.format([1e20])", "1e+20"),
    ("'%s'.format([1234567.0])", "1.234567e+06"),
    ("'%s'.format([0.0001])", "0.0001"),
    ("'%s'.format([0.00001])", "1e-05"),
    ("'%s'.format([123456.0])", "123456"),
    ("'%s'.format([-2.0])", "-2"),
    (
        "'%s'.format([[1.5, 'a', b'x', true, null, 2u, -3, {'k': [1]}]])",
        '[1.500000, "a", b"x", true, null, 2, -3, {"k":[1]}]',
    ),
    ("'%s'.format([{'b': 1, 'a': 'x', 'c': 1.5}])", '{"a":"x", "b":1, "c":1.500000}'),
    (
        "'%s'.format([[timestamp('2023-01-01T00:00:00.5Z'), duration('1.5s'), duration('3600s')]])",
        '[timestamp("2023-01-01T00:00:00.5Z"), duration("1.5s"), duration("3600s")]',
    ),
    ("'%s %s'.format([timestamp('2023-01-01T00:00:00Z'), duration('90m')])", "2023-01-01T00:00:00Z 5400s"),
    ("'%s'.format([b'hi'])", "hi"),
    ("'%s'.format([type(1)])", "int"),
    ("'%s'.format([[type(1), type('a'), type(null), type([]), type({})]])", "[int, string, null_type, list, map]"),
    ("'%s'.format([['a\"b\\n\\t\\\\', 'é☃\\x01']])", '["a\\"b\\n\\t\\\\", "é☃\\x01"]'),
    ("'%x'.format(['hello'])", "68656c6c6f"),
    ("'%X'.format([b'\\xff\\x01'])", "FF01"),
    ("'%x'.format([-255])", "-ff"),
    ("'%b'.format([true])", "1"),
    ("'%b'.format([-5])", "-101"),
    ("'%o'.format([-8])", "-10"),
    ("'100%%'.format([])", "100%"),
    ("'%s'.format([1.0/0.0])", "+Inf"),
    ("'%s'.format([[1.0/0.0, -1.0/0.0, 0.0/0.0]])", '["+Inf", "-Inf", "NaN"]'),
    ("'%s'.format([0.0/0.0])", "NaN"),
    ("'%f'.format([1.0/0.0])", "∞"),
    ("'%e'.format([0.0/0.0])", "   NaN"),
    ("'%e'.format([1.0/0.0])", "     ∞"),
    ("'%s'.format([[]])", "[]"),
    ("'%s'.format([{}])", "{}"),
    ("'%s'.format([[[1, 2], {'x': {'y': b'z'}}]])", '[[1, 2], {"x":{"y":b"z"}}]'),
    ("'%.3f'.format([1234.5678])", "1,234.568"),
    ("'%e'.format([123456789.0])", "1.234568×10⁰⁸"),
    ("'%.0e'.format([5.0])", "5.000000×10⁰⁰"),
    ("'%.12e'.format([1.0/3.0])", "3.333333×10⁻⁰¹"),
    ("'%f'.format([0.000001])", "0.000001"),
    ("'%f'.format([1e-7])", "0.000000"),
    ("'%.20f'.format([0.1])", "0.10000000000000000555"),
    ("'%f'.format([12345678901234567890.0])", "12,345,678,901,234,567,168.000000"),
    ("'%.20e'.format([1.0])", "       1.000000×10⁰⁰"),
    ("'%.16e'.format([-1.0])", "  -1.000000×10⁰⁰"),
    ("'%f'.format([-1e-7])", "-0.000000"),
    ("'%f'.format([-1234.5])", "-1,234.500000"),
    ("'%.1f'.format([0.05])", "0.1"),
    ("'%.1f'.format([0.25])", "0.2"),
    ("'%f'.format([-1.0/0.0])", "-∞"),
    ("'%e'.format([-0.0])", "0.000000×10⁰⁰"),
    ("'%e'.format([9.9999999])", "1.000000×10⁰¹"),
    ("'%e'.format([1e21])", "1.000000×10²¹"),
    ("'%e'.format([5e-324])", "4.940656×10⁻³²⁴"),
    ("'%f'.format([5e-324])", "0.000000"),
    ("'%s'.format([5e-324])", "5e-324"),
    ("'%s'.format([1e21])", "1e+21"),
    ("'%s'.format([123456789012345680000.0])", "1.2345678901234568e+20"),
    ("'%s'.format([0.1+0.2])", "0.30000000000000004"),
    ("'%s'.format([100.0])", "100"),
    ("'%s'.format([-0.0])", "-0"),
    ("'%s'.format([[1e20, -0.0, 0.1+0.2]])", "[100000000000000000000.000000, -0.000000, 0.300000]"),
    ("'%s'.format(['a%sb'])", "a%sb"),
    ("strings.quote('a\"\\u00a0\\x7f\\u2028𝄞')", '"a\\"\xa0\x7f\u2028𝄞"'),
    ("'%d %d'.format(dyn([1, 2, 3]))", "1 2"),
    ("['a', 'b'].join()", "ab"),
    ("['a', 'b'].join(', ')", "a, b"),
]

RUNTIME_ERRORS = [
    (
        "'%s'.format([[b'\\xff\\x00a']])",
        'error during formatting: could not convert argument "invalid UTF-8 in bytes, cannot convert to string" to string',
    ),
    (
        "'%d'.format([dyn(1.5)])",
        "error during formatting: decimal clause can only be used on integers, was given double",
    ),
    (
        "'%d'.format([dyn(true)])",
        "error during formatting: decimal clause can only be used on integers, was given bool",
    ),
    ("'%e'.format([dyn(1)])", "error during formatting: scientific clause can only be used on doubles, was given int"),
    (
        "'%.2f'.format([dyn('x')])",
        "error during formatting: fixed-point clause can only be used on doubles, was given string",
    ),
    ("'%o'.format([dyn(1.0)])", "error during formatting: octal clause can only be used on integers, was given double"),
    (
        "'%b'.format([dyn('x')])",
        "error during formatting: only integers and bools can be formatted as binary, was given string",
    ),
    (
        "'%x'.format([dyn([1])])",
        "error during formatting: only integers, byte buffers, and strings can be formatted as hex, was given list",
    ),
    (
        "'%x'.format([dyn({'a': 1})])",
        "error during formatting: only integers, byte buffers, and strings can be formatted as hex, was given map",
    ),
    ("('%' + 'q').format([1])", 'could not parse formatting clause: unrecognized formatting clause "q"'),
    ("('%s %' + 's').format([1])", "index 1 out of range"),
    ("('%' + '').format([1])", "unexpected end of string"),
    (
        "('%.' + 'f').format([1.5])",
        'could not parse formatting clause: error while parsing precision: error while converting precision to integer: strconv.Atoi: parsing "": invalid syntax',
    ),
    (
        "('%.' + '3').format([1.0])",
        "could not parse formatting clause: error while parsing precision: could not find end of precision specifier",
    ),
    ("('%5' + 'd').format([1])", 'could not parse formatting clause: unrecognized formatting clause "5"'),
    ("('%s' + '').format([])", "index 0 out of range"),
    ("dyn(['a', 1]).join(',')", "join: invalid input: 1"),
    ("('%' + 'é').format([1])", 'could not parse formatting clause: unrecognized formatting clause "Ã"'),
]


def run(expression: str) -> object:
    return celenv.Environment(False).compile(expression).evaluate(celenv.activation({}))


@pytest.mark.parametrize(("expression", "expected"), EXPECTED)
def test_output_equals_cel_go(expression: str, expected: str) -> None:
    assert run(expression) == expected


@pytest.mark.parametrize(("expression", "message"), RUNTIME_ERRORS)
def test_errors_are_worded_as_cel_go(expression: str, message: str) -> None:
    result = run(expression)
    assert isinstance(result, celenv.EvalError), result
    assert result.message == message


def test_go_g_switches_to_exponent_form_where_go_does() -> None:
    assert [celformat.go_g(x) for x in (999999.0, 1e6, 1e-4, 9.9e-5)] == ["999999", "1e+06", "0.0001", "9.9e-05"]


def test_go_quote_escapes_like_strconv_quote() -> None:
    assert (
        celformat.go_quote("tab\t \x00 \u00a0 \U0001f600 \U000e0001") == '"tab\\t \\x00 \\u00a0 \U0001f600 \\U000e0001"'
    )
    assert celformat.go_quote(b"\xff a") == '"\\xff a"'


# cel-go refuses these when the policy is compiled (a literal format string with a literal list):
# texts and positions are cel-go's.
COMPILE_ERRORS = [
    (
        "'%d'.format([1.5])",
        "at 1:14: error during formatting: decimal clause can only be used on integers, was given double",
    ),
    (
        "'%d'.format(['a'])",
        "at 1:14: error during formatting: decimal clause can only be used on integers, was given string",
    ),
    ("'%q'.format([1])", 'at 1:12: could not parse formatting clause: unrecognized formatting clause "q"'),
    ("'%s %s'.format([1])", "at 1:15: index 1 out of range"),
    ("'%'.format([1])", "at 1:11: unexpected end of string"),
    (
        "'%.f'.format([1.5])",
        'at 1:13: could not parse formatting clause: error while parsing precision: error while converting precision to integer: strconv.Atoi: parsing "": invalid syntax',
    ),
    (
        "'%.2f'.format([1])",
        "at 1:16: error during formatting: fixed-point clause can only be used on doubles, was given int",
    ),
    ("'%5d'.format([1])", 'at 1:13: could not parse formatting clause: unrecognized formatting clause "5"'),
    ("'%d %d'.format([1, 2, 3])", "at 1:15: too many arguments supplied to string.format (expected 2, got 3)"),
    (
        "'%d'.format([true])",
        "at 1:14: error during formatting: decimal clause can only be used on integers, was given bool",
    ),
    (
        "'%x'.format([[1]])",
        "at 1:14: error during formatting: only integers, byte buffers, and strings can be formatted as hex, was given list",
    ),
    ("'%s%'.format([1])", "at 1:13: unexpected end of string"),
    (
        "'%.'.format([1.0])",
        "at 1:12: could not parse formatting clause: error while parsing precision: could not find end of precision specifier",
    ),
    (
        "'%e'.format([1])",
        "at 1:14: error during formatting: scientific clause can only be used on doubles, was given int",
    ),
    (
        "'%o'.format([1.0])",
        "at 1:14: error during formatting: octal clause can only be used on integers, was given double",
    ),
    (
        "'%b'.format(['x'])",
        "at 1:14: error during formatting: only integers and bools can be formatted as binary, was given string",
    ),
    ("'%d %s'.format([1, 'a', [1, 2]])", "at 1:15: too many arguments supplied to string.format (expected 2, got 3)"),
    (
        '"%d\\n%f".format([1, 2])',
        "at 1:21: error during formatting: fixed-point clause can only be used on doubles, was given int",
    ),
    (
        "'%s' + '%d'.format(['x'])",
        "at 1:21: error during formatting: decimal clause can only be used on integers, was given string",
    ),
    (
        "'%d, %d'.format([1, 'a,b'])",
        "at 1:21: error during formatting: decimal clause can only be used on integers, was given string",
    ),
]


@pytest.mark.parametrize(("expression", "message"), COMPILE_ERRORS)
def test_literal_format_calls_are_checked_at_compile_time(expression: str, message: str) -> None:
    with pytest.raises(celenv.CelError) as e:
        celenv.Environment(False).compile(expression)
    assert str(e.value) == f"compilation failed: {message}"


@pytest.mark.parametrize(
    "expression",
    [
        "'%d'.format([object.spec.replicas])",  # dyn: checked when evaluated
        "[1].all(x, '%d'.format([x]) == '1')",  # a comprehension variable
        "'%d %s'.format([1, 'a, b'])",  # a comma inside a string element
        "'say %d'.format([1]) + \"'%d'.format(['x'])\"",  # a format call inside a string
    ],
)
def test_what_cel_go_accepts_still_compiles(expression: str) -> None:
    compiled = celenv.Environment(False).compile(expression)
    assert compiled.source == expression
