"""Which revision of a repository a GitSync follows, and how a semver range picks a tag.

Ref names end up in git refspecs, so they are validated here (a name like ``--upload-pack=x``
must never reach git's argument list), once, when the spec is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import semantic_version  # type: ignore[import-untyped]

_FULL_SHA1 = re.compile(r"^[0-9a-f]{40}$")
# A tag is a semver version with an optional leading "v"; 1 or 2 components are padded the way
# Flux (Masterminds/semver) reads them, so a "v1.2" tag satisfies "^1.2".
_TAG_VERSION = re.compile(r"^v?(?P<core>\d+(?:\.\d+){0,2})(?P<rest>(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


@dataclass(frozen=True)
class GitRef:
    """Exactly one of the fields is set; none set follows the remote's default branch (HEAD)."""

    branch: str | None = None  # follow this branch; default None
    tag: str | None = None  # check out this tag; default None
    semver: str | None = None  # the highest tag in this range; default None
    commit: str | None = None  # this commit (40 hex); default None

    def __post_init__(self) -> None:
        chosen = [f.name for f in fields(self) if getattr(self, f.name) is not None]
        if len(chosen) > 1:
            raise ValueError(f"ref: only one of branch, tag, semver, commit may be set, got {', '.join(chosen)}")
        if self.branch is not None:
            _check_ref_name("branch", self.branch)
        if self.tag is not None:
            _check_ref_name("tag", self.tag)
        if self.semver is not None:
            parse_range(self.semver)
        if self.commit is not None and not _FULL_SHA1.match(self.commit):
            raise ValueError(f"ref.commit: {self.commit!r} is not a full 40-character lowercase hex sha1")

    @classmethod
    def from_spec(cls, spec: Mapping[str, str]) -> GitRef:
        """Read the GitSync ``ref`` mapping; the ValueError names the field a user has to fix."""
        known = {f.name for f in fields(cls)}
        for key, value in spec.items():
            if key not in known:
                raise ValueError(f"ref.{key}: unknown field (expected one of branch, tag, semver, commit)")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"ref.{key}: must be a non-empty string, got {value!r}")
        return cls(**{key: value.strip() for key, value in spec.items()})

    def __str__(self) -> str:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return f"{f.name} {value}"
        return "default branch"


def _check_ref_name(field: str, name: str) -> None:
    """A practical subset of ``git check-ref-format``: enough that the name is safe in a refspec."""
    problem = None
    if name.startswith(("-", "/")) or name.endswith(("/", ".", ".lock")):
        problem = "must not start with '-' or '/' nor end with '/', '.' or '.lock'"
    elif ".." in name or "@{" in name or "//" in name or name == "@":
        problem = "must not contain '..', '@{' or '//'"
    elif _BAD_REF_CHARS.search(name):
        problem = "must not contain spaces, control characters or any of ~^:?*[\\"
    elif any(part.startswith(".") for part in name.split("/")):
        problem = "no path component may start with '.'"
    if problem:
        raise ValueError(f"ref.{field}: {name!r} is not a valid git ref name: {problem}")


def parse_range(constraint: str) -> semantic_version.NpmSpec:
    """Parse a Flux-style range: npm syntax, and commas read as AND as Masterminds/semver does."""
    text = " ".join(constraint.replace(",", " ").split())
    try:
        return semantic_version.NpmSpec(text)
    except ValueError as e:
        raise ValueError(f"ref.semver: {constraint!r} is not a valid semver range: {e}") from None


def tag_version(tag: str) -> semantic_version.Version | None:
    """The version a tag stands for, or None for tags that are not versions (they are ignored)."""
    m = _TAG_VERSION.match(tag)
    if not m:
        return None
    core = m["core"].split(".")
    core += ["0"] * (3 - len(core))
    try:
        return semantic_version.Version(".".join(str(int(c)) for c in core) + m["rest"])
    except ValueError:
        return None


def select_tag(constraint: str, tags: Iterable[str]) -> str | None:
    """The tag with the highest version inside the range; ties (``v1.0.0`` and ``1.0.0``) resolve
    to the lexically greatest name so every worker picks the same one."""
    spec = parse_range(constraint)
    best: tuple[semantic_version.Version, str] | None = None
    for tag in tags:
        version = tag_version(tag)
        if version is None or not spec.match(version):
            continue
        if best is None or (version, tag) > best:
            best = (version, tag)
    return best[1] if best else None
