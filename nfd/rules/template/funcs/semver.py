"""Sprig's semver and semverCompare: Masterminds/semver v3 versions and constraints."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from nfd.regex import compile_re2
from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.common import strval

_SEMVER_RE = re.compile(
    r"^v?([0-9]+)(\.[0-9]+)?(\.[0-9]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?$"
)
_CV = (
    r"v?([0-9|x|X|\*]+)(\.[0-9|x|X|\*]+)?(\.[0-9|x|X|\*]+)?"
    r"(-([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
    r"(\+([0-9A-Za-z\-]+(\.[0-9A-Za-z\-]+)*))?"
)
_OPS = r"=||!=|>|<|>=|=>|<=|=<|~|~>|\^"


# RE2 like upstream: these patterns backtrack exponentially in Python's re on crafted input.
# Compiled on use (compile_re2 caches) so importing the rule engine stays cheap.
_CONSTRAINT_RE = rf"^\s*({_OPS})\s*({_CV})\s*$"
_RANGE_RE = rf"\s*({_CV})\s+-\s+({_CV})\s*"
_FIND_RE = rf"({_OPS})\s*({_CV})"
_VALID_RE = rf"^(\s*({_OPS})\s*({_CV})\s*)((?:\s+|,\s*)({_OPS})\s*({_CV})\s*)*$"
_MAX_SEGMENT = 2**64 - 1


class SemverVersion(Mapping[str, Any]):
    """A parsed version; templates read it like upstream's methods: ``.Major``, ``.Prerelease``."""

    def __init__(self, major: int, minor: int, patch: int, pre: str, meta: str, original: str):
        self.major, self.minor, self.patch = major, minor, patch
        self.pre, self.meta, self.original = pre, meta, original
        self._fields = {
            "Major": major,
            "Minor": minor,
            "Patch": patch,
            "Prerelease": pre,
            "Metadata": meta,
            "Original": original,
        }

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + self.pre
        if self.meta:
            text += "+" + self.meta
        return text

    def compare(self, other: SemverVersion) -> int:
        mine = (self.major, self.minor, self.patch)
        theirs = (other.major, other.minor, other.patch)
        if mine != theirs:
            return -1 if mine < theirs else 1
        if not self.pre and not other.pre:
            return 0
        if not self.pre:
            return 1
        if not other.pre:
            return -1
        return _compare_prerelease(self.pre, other.pre)


def _compare_prerelease(a: str, b: str) -> int:
    pa, pb = a.split("."), b.split(".")
    for i in range(max(len(pa), len(pb))):
        d = _compare_pre_part(pa[i] if i < len(pa) else "", pb[i] if i < len(pb) else "")
        if d:
            return d
    return 0


def _compare_pre_part(s: str, o: str) -> int:
    # Upstream's rules, including its quirk for a missing part against a numeric one.
    if s == o:
        return 0
    s_num, o_num = s.isdigit() and s.isascii(), o.isdigit() and o.isascii()
    if o == "":
        return 1 if s_num else -1
    if s == "":
        return -1 if o_num else 1
    if not s_num and not o_num:
        return 1 if s > o else -1
    if not s_num:
        return 1  # alphanumeric identifiers sort after numeric ones
    if not o_num:
        return -1
    return 1 if int(s) > int(o) else -1


def parse_semver(text: str) -> SemverVersion:
    """semver.NewVersion: lenient (leading v, missing minor/patch are 0)."""
    m = _SEMVER_RE.match(text)
    if m is None or text.endswith("\n"):
        raise TemplateError("Invalid Semantic Version")
    nums = [int(m.group(1)), int((m.group(2) or ".0")[1:]), int((m.group(3) or ".0")[1:])]
    if any(n > _MAX_SEGMENT for n in nums):
        raise TemplateError("Error parsing version segment: value out of range")
    pre = m.group(5) or ""
    for part in pre.split(".") if pre else []:
        if part.isdigit() and len(part) > 1 and part.startswith("0"):
            raise TemplateError("Version segment starts with 0")
    return SemverVersion(nums[0], nums[1], nums[2], pre, m.group(8) or "", text)


class _Constraint:
    def __init__(
        self, op: str, con: SemverVersion, dirty: bool, minor_dirty: bool, patch_dirty: bool
    ):
        self.op, self.con = op, con
        self.dirty, self.minor_dirty, self.patch_dirty = dirty, minor_dirty, patch_dirty

    def check(self, v: SemverVersion) -> bool:
        c = self.con
        # A prerelease version only satisfies constraints that name a prerelease.
        if v.pre and not c.pre:
            return False
        op = self.op
        if op in ("", "="):
            return self._tilde(v) if self.dirty else v.compare(c) == 0
        if op == "!=":
            return self._not_equal(v)
        if op == ">":
            if not self.dirty or v.major != c.major:
                return v.compare(c) > 0 if not self.dirty else v.major > c.major
            if self.minor_dirty:
                return False
            if self.patch_dirty:
                return v.minor > c.minor
            return v.compare(c) > 0
        if op == "<":
            return v.compare(c) < 0
        if op in (">=", "=>"):
            return v.compare(c) >= 0
        if op in ("<=", "=<"):
            if not self.dirty:
                return v.compare(c) <= 0
            if v.major > c.major:
                return False
            return not (v.major == c.major and v.minor > c.minor and not self.minor_dirty)
        if op in ("~", "~>"):
            return self._tilde(v)
        return self._caret(v)

    def _not_equal(self, v: SemverVersion) -> bool:
        c = self.con
        if self.dirty:
            if c.major != v.major:
                return True
            if c.minor != v.minor and not self.minor_dirty:
                return True
            if self.minor_dirty:
                return False
            if c.patch != v.patch and not self.patch_dirty:
                return True
            if self.patch_dirty:
                if v.pre or c.pre:
                    return _compare_prerelease(v.pre, c.pre) != 0
                return False
        return v.compare(c) != 0

    def _tilde(self, v: SemverVersion) -> bool:
        c = self.con
        if v.compare(c) < 0:
            return False
        if (
            (c.major, c.minor, c.patch) == (0, 0, 0)
            and not self.minor_dirty
            and not self.patch_dirty
        ):
            return True
        if v.major != c.major:
            return False
        return not (v.minor != c.minor and not self.minor_dirty)

    def _caret(self, v: SemverVersion) -> bool:
        c = self.con
        if v.compare(c) < 0:
            return False
        if c.major > 0 or self.minor_dirty:
            return v.major == c.major
        if v.major > 0:
            return False
        if c.minor > 0 or self.patch_dirty:
            return v.minor == c.minor
        if v.minor > 0:
            return False
        return v.patch == c.patch


def _is_x(s: str) -> bool:
    return s in ("x", "X", "*")


def _parse_constraint(text: str) -> _Constraint:
    if not text:
        return _Constraint("", parse_semver("0.0.0"), True, False, False)
    m = compile_re2(_CONSTRAINT_RE).match(text)
    if m is None:
        raise TemplateError(f"improper constraint: {text}")
    major, minor, patch, pre = m.group(3), m.group(4) or "", m.group(5) or "", m.group(6) or ""
    ver = m.group(2)
    dirty = minor_dirty = patch_dirty = False
    if _is_x(major) or major == "":
        ver, dirty = "0.0.0" + pre, True
    elif _is_x(minor[1:]) or minor == "":
        ver, dirty, minor_dirty = f"{major}.0.0{pre}", True, True
    elif _is_x(patch[1:]) or patch == "":
        ver, dirty, patch_dirty = f"{major}{minor}.0{pre}", True, True
    try:
        con = parse_semver(ver)
    except TemplateError:
        raise TemplateError(f"improper constraint: {text}") from None
    return _Constraint(m.group(1), con, dirty, minor_dirty, patch_dirty)


def parse_constraints(text: str) -> list[list[_Constraint]]:
    """semver.NewConstraint: ``||`` separates alternatives, commas or spaces join ANDs."""
    for m in list(compile_re2(_RANGE_RE).finditer(text)):
        text = text.replace(m.group(0), f">= {m.group(1)}, <= {m.group(11)}", 1)
    alternatives = []
    for part in text.split("||"):
        if not compile_re2(_VALID_RE).match(part):
            raise TemplateError(f"improper constraint: {part}")
        found = [m.group(0) for m in compile_re2(_FIND_RE).finditer(part)] or [part]
        alternatives.append([_parse_constraint(s) for s in found])
    return alternatives


def _semver(text: Any) -> SemverVersion:
    return parse_semver(strval(text))


def _semver_compare(constraint: Any, version: Any) -> bool:
    alternatives = parse_constraints(strval(constraint))
    v = parse_semver(strval(version))
    return any(all(c.check(v) for c in group) for group in alternatives)


SEMVER: dict[str, Callable[..., Any]] = {
    "semver": _semver,
    "semverCompare": _semver_compare,
}
