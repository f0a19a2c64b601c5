"""Chart version constraints with Helm's semantics (Masterminds/semver v3), on ``semantic-version``.

Why not ``semantic_version.NpmSpec`` directly: Helm's syntax is close to npm's but not the
same: ``,`` joins comparators, ``!=`` and ``~>``/``=>``/``=<`` exist, a space may follow the
operator, and prereleases match when ANY comparator of the AND group has a prerelease (npm:
only the same major.minor.patch).  A version picked differently from ``helm pull --version``
would silently deploy another chart, so the rules below follow Masterminds' constraint code
and are tested against its documented equivalences; ``semantic_version.Version`` does the
ordering (SemVer 2.0 precedence, build metadata ignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import semantic_version  # type: ignore[import-untyped]

_NUM = r"[0-9]+|[xX*]"
_VER = (
    rf"v?(?P<major>{_NUM})(?:\.(?P<minor>{_NUM}))?(?:\.(?P<patch>{_NUM}))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_OPS = ("!=", ">=", "=>", "<=", "=<", "~>", "=", ">", "<", "~", "^")
_COMPARATOR = re.compile(r"\s*(?P<op>!=|>=|=>|<=|=<|~>|=|>|<|~|\^)?\s*(?P<ver>" + _VER.replace("?P<", "?P<c_") + ")")
_HYPHEN = re.compile(r"^\s*(?P<lo>\S+)\s+-\s+(?P<hi>\S+)\s*$")
_VERSION = re.compile(rf"^{_VER}$")


class ConstraintError(ValueError):
    """A constraint Helm would not parse either."""


def parse_version(text: str) -> semantic_version.Version | None:
    """A chart version as Helm's lenient parser reads it (``v1.2`` is 1.2.0); None if it is not one."""
    m = _VERSION.match(text.strip())
    if not m or any(m.group(k) and not m.group(k).isdigit() for k in ("major", "minor", "patch")):
        return None
    pre = tuple(m.group("pre").split(".")) if m.group("pre") else ()
    build = tuple(m.group("build").split(".")) if m.group("build") else ()
    try:
        return semantic_version.Version(
            major=int(m.group("major")),
            minor=int(m.group("minor") or 0),
            patch=int(m.group("patch") or 0),
            prerelease=pre,
            build=build,
        )
    except ValueError:
        return None


def _cmp(a: semantic_version.Version, b: semantic_version.Version) -> int:
    # build metadata never orders versions (SemVer 2.0 §10, Masterminds' Compare)
    ka, kb = a.truncate("prerelease").precedence_key, b.truncate("prerelease").precedence_key
    return int((ka > kb) - (ka < kb))


@dataclass(frozen=True)
class _Comparator:
    op: str
    con: semantic_version.Version
    dirty: bool
    minor_dirty: bool
    patch_dirty: bool

    def check(self, v: semantic_version.Version) -> bool:
        op = {"=>": ">=", "=<": "<=", "~>": "~", "": "="}.get(self.op, self.op)
        return _CHECKS[op](self, v)

    def _equal(self, v: semantic_version.Version) -> bool:
        return self._tilde(v) if self.dirty else _cmp(v, self.con) == 0

    def _not_equal(self, v: semantic_version.Version) -> bool:
        c = self.con
        if not self.dirty:
            return _cmp(v, c) != 0
        if v.major != c.major:
            return True
        if self.minor_dirty:
            return False
        if v.minor != c.minor:
            return True
        if self.patch_dirty:
            return False
        return _cmp(v, c) != 0

    def _greater(self, v: semantic_version.Version) -> bool:
        c = self.con
        if not self.dirty:
            return _cmp(v, c) > 0
        if v.major != c.major:
            return bool(v.major > c.major)
        if self.minor_dirty:
            return False
        if self.patch_dirty:
            return bool(v.minor > c.minor)
        return _cmp(v, c) > 0

    def _less(self, v: semantic_version.Version) -> bool:
        return _cmp(v, self.con) < 0

    def _at_least(self, v: semantic_version.Version) -> bool:
        return _cmp(v, self.con) >= 0

    def _at_most(self, v: semantic_version.Version) -> bool:
        c = self.con
        if not self.dirty:
            return _cmp(v, c) <= 0
        if v.major > c.major:
            return False
        return not (v.major == c.major and v.minor > c.minor and not self.minor_dirty)

    def _tilde(self, v: semantic_version.Version) -> bool:
        c = self.con
        if _cmp(v, c) < 0:
            return False
        if (c.major, c.minor, c.patch) == (0, 0, 0) and not self.minor_dirty and not self.patch_dirty:
            return True
        if v.major != c.major:
            return False
        return bool(v.minor == c.minor or self.minor_dirty)

    def _caret(self, v: semantic_version.Version) -> bool:
        c = self.con
        if _cmp(v, c) < 0:
            return False
        if c.major > 0 or self.minor_dirty:
            return bool(v.major == c.major)
        if v.major > 0:
            return False
        if c.minor > 0 or self.patch_dirty:
            return bool(v.minor == c.minor)
        if v.minor > 0:
            return False
        return bool(v.patch == c.patch)


# Masterminds' operator table: one method per operator (aliases mapped in ``check``).
_CHECKS: dict[str, Callable[[_Comparator, semantic_version.Version], bool]] = {
    "=": _Comparator._equal,
    "!=": _Comparator._not_equal,
    ">": _Comparator._greater,
    "<": _Comparator._less,
    ">=": _Comparator._at_least,
    "<=": _Comparator._at_most,
    "~": _Comparator._tilde,
    "^": _Comparator._caret,
}


def _comparator(op: str, m: re.Match[str]) -> _Comparator:
    major, minor, patch = m.group("c_major"), m.group("c_minor"), m.group("c_patch")
    pre = m.group("c_pre") or ""
    suffix = f"-{pre}" if pre else ""

    def is_x(part: str | None) -> bool:
        return part is None or part in ("x", "X", "*")

    dirty = minor_dirty = patch_dirty = False
    if is_x(major):
        text, dirty = f"0.0.0{suffix}", True
    elif is_x(minor):
        text, dirty, minor_dirty = f"{major}.0.0{suffix}", True, True
    elif is_x(patch):
        text, dirty, patch_dirty = f"{major}.{minor}.0{suffix}", True, True
    else:
        text = f"{major}.{minor}.{patch}{suffix}"
    con = parse_version(text)
    if con is None:
        raise ConstraintError(f"improper constraint: {m.group(0).strip()!r}")
    return _Comparator(op, con, dirty, minor_dirty, patch_dirty)


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: OR of AND groups; each group remembers whether it names a prerelease."""

    text: str
    groups: tuple[tuple[tuple[_Comparator, ...], bool], ...]

    def allows(self, version: str | semantic_version.Version) -> bool:
        v = parse_version(version) if isinstance(version, str) else version
        if v is None:
            return False
        for comparators, has_pre in self.groups:
            if v.prerelease and not has_pre:
                continue
            if all(c.check(v) for c in comparators):
                return True
        return False

    def best(self, versions: Iterable[str]) -> str | None:
        """The highest of ``versions`` this allows (the original string, as the index spells it)."""
        best: tuple[semantic_version.Version, str] | None = None
        for text in versions:
            v = parse_version(text)
            if v is not None and self.allows(v) and (best is None or _cmp(v, best[0]) > 0):
                best = (v, text)
        return best[1] if best else None


def _and_group(text: str) -> tuple[tuple[_Comparator, ...], bool]:
    if h := _HYPHEN.match(text):
        return _and_group(f">= {h.group('lo')}, <= {h.group('hi')}")
    comparators: list[_Comparator] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _COMPARATOR.match(text, pos)
        if not m or m.end() == pos:
            raise ConstraintError(f"improper constraint: {text!r}")
        comparators.append(_comparator(m.group("op") or "", m))
        pos = m.end()
        rest = text[pos:]
        sep = re.match(r"\s*,\s*|\s+", rest)
        if sep:
            pos += sep.end()
        elif rest:
            raise ConstraintError(f"improper constraint: {text!r}")
    if not comparators:
        raise ConstraintError("empty constraint")
    return tuple(comparators), any(c.con.prerelease for c in comparators)


def parse_constraint(text: str) -> Constraint:
    """``text`` (Helm/Masterminds syntax: ``>=1.2 <2``, ``~1.2``, ``^1.2``, ``1.2.x``, ``*``, ``a || b``)."""
    if not text.strip():
        raise ConstraintError("empty constraint")
    return Constraint(text, tuple(_and_group(part) for part in text.split("||")))


def is_exact(text: str) -> bool:
    """Whether ``text`` is one full version (then Helm looks it up as is, no range resolution)."""
    m = _VERSION.match(text.strip())
    return bool(m and m.group("minor") and m.group("patch") and parse_version(text) is not None)


def newest(versions: Iterable[str], n: int) -> list[str]:
    """The ``n`` highest valid versions, highest last (for "no version matches" messages)."""
    parsed = [(v, text) for text in versions if (v := parse_version(text)) is not None]
    parsed.sort(key=lambda pair: pair[0].truncate("prerelease").precedence_key)
    return [text for _, text in parsed[-n:]]
