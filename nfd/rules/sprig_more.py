"""More Sprig functions for rule templates: semver, Go paths and URLs, merges, durations,
dates and random values.

Kept apart from ``template_funcs`` so the core table stays small; ``template_funcs``
merges ``SPRIG_MORE`` into ``FUNCS``. Semantics follow Sprig v3 (Masterminds/semver v3
constraints, Go's path, net/url and time packages, mergo for merges).
"""

from __future__ import annotations

import base64
import copy
import random
import re
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any

from nfd.regex import RegexError, compile_re2
from nfd.rules.errors import TemplateError
from nfd.rules.template import go_type

# -- semver (Masterminds/semver v3) ---------------------------------------------

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
    return parse_semver(_str(text))


def _semver_compare(constraint: Any, version: Any) -> bool:
    alternatives = parse_constraints(_str(constraint))
    v = parse_semver(_str(version))
    return any(all(c.check(v) for c in group) for group in alternatives)


# -- Go path (path/filepath on Linux) ---------------------------------------------


def go_clean(path: str) -> str:
    """path.Clean: one slash, no ``.``, ``..`` resolved lexically, ``.`` for empty."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    text = "/".join(out)
    if rooted:
        return "/" + text
    return text or "."


def go_base(path: str) -> str:
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    return path.rsplit("/", 1)[-1]


def go_dir(path: str) -> str:
    return go_clean(path[: path.rfind("/") + 1])


def go_ext(path: str) -> str:
    for i in range(len(path) - 1, -1, -1):
        if path[i] == "/":
            break
        if path[i] == ".":
            return path[i:]
    return ""


# -- net/url ----------------------------------------------------------------------

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-_.~")


def _should_escape(ch: int, mode: str) -> bool:
    c = chr(ch)
    if c in string.ascii_letters or c in string.digits:
        return False
    if mode == "host" and c in "!$&'()*+,;=:[]<>\"":
        return False
    if c in "-_.~":
        return False
    if c in "$&+,/:;=?@":
        if mode == "path":
            return c == "?"
        if mode == "userinfo":
            return c in "@/?:"
        if mode == "fragment":
            return False
        return True
    return not (mode == "fragment" and c in "!()*")


def _escape(text: str, mode: str) -> str:
    out = []
    for b in text.encode("utf-8", "surrogateescape"):
        out.append(f"%{b:02X}" if _should_escape(b, mode) else chr(b))
    return "".join(out)


def _unescape(text: str, mode: str) -> str:
    raw = bytearray()
    i = 0
    data = text.encode("utf-8", "surrogateescape")
    while i < len(data):
        if data[i] == 0x25:  # %
            hexpart = data[i + 1 : i + 3].decode("ascii", "replace")
            if len(hexpart) < 2 or not all(h in string.hexdigits for h in hexpart):
                bad = data[i : i + 3].decode("utf-8", "replace")
                raise TemplateError(f'invalid URL escape "{bad}"')
            raw.append(int(hexpart, 16))
            i += 3
            continue
        raw.append(data[i])
        i += 1
    return raw.decode("utf-8", "surrogateescape")


def _split_userinfo(userinfo: str) -> tuple[str, str | None]:
    user, sep, password = userinfo.partition(":")
    return _unescape(user, "userinfo"), (_unescape(password, "userinfo") if sep else None)


def _userinfo_string(user: str, password: str | None) -> str:
    text = _escape(user, "userinfo")
    if password is not None:
        text += ":" + _escape(password, "userinfo")
    return text


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port.startswith(":") and all(c in string.digits for c in port[1:]))


def _parse_host(host: str, raw: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise TemplateError(f"parse \"{raw}\": missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise TemplateError(f'parse "{raw}": invalid port "{host[end + 1 :]}" after host')
    else:
        colon = host.rfind(":")
        if colon >= 0 and not _valid_optional_port(host[colon:]):
            raise TemplateError(f'parse "{raw}": invalid port "{host[colon:]}" after host')
    return _unescape(host, "host")


def _hostname(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end >= 0 else host[1:]
    colon = host.rfind(":")
    if colon >= 0 and _valid_optional_port(host[colon:]):
        return host[:colon]
    return host


def parse_url(raw: str) -> dict[str, str]:
    """url.Parse, returned as Sprig's urlParse dict."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise TemplateError(f'parse "{raw}": net/url: invalid control character in URL')
    rest, _, fragment = raw.partition("#")
    fragment = _unescape(fragment, "fragment")
    result = {
        "scheme": "",
        "host": "",
        "hostname": "",
        "path": "",
        "query": "",
        "opaque": "",
        "fragment": fragment,
        "userinfo": "",
    }
    if rest == "*":
        result["path"] = "*"
        return result
    m = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", rest)
    if m:
        result["scheme"] = m.group(0)[:-1].lower()
        rest = rest[m.end() :]
    elif rest.startswith(":"):
        raise TemplateError(f'parse "{raw}": missing protocol scheme')
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest, _, result["query"] = rest.partition("?")
    if not rest.startswith("/"):
        if result["scheme"]:
            result["opaque"] = rest
            return result
        if ":" in rest.split("/", 1)[0]:
            raise TemplateError(f'parse "{raw}": first path segment in URL cannot contain colon')
    if rest.startswith("//") and (result["scheme"] or not rest.startswith("///")):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        userinfo, at, host = authority.rpartition("@")
        if at:
            user, password = _split_userinfo(userinfo)
            result["userinfo"] = _userinfo_string(user, password)
        result["host"] = _parse_host(host, raw)
        result["hostname"] = _hostname(result["host"])
    result["path"] = _unescape(rest, "path")
    return result


def join_url(parts: Mapping[str, Any]) -> str:
    """Sprig urlJoin: url.URL{...}.String() from a urlParse-style dict."""

    if not isinstance(parts, Mapping):
        raise TemplateError(f"wrong type for value; expected map; got {go_type(parts)}")

    def part(key: str) -> str:
        value = parts.get(key)
        return value if isinstance(value, str) else ""

    scheme, host, path = part("scheme"), part("host"), part("path")
    query, opaque, fragment, userinfo = (
        part("query"),
        part("opaque"),
        part("fragment"),
        part("userinfo"),
    )
    user = _split_userinfo(userinfo) if userinfo else None
    out = scheme + ":" if scheme else ""
    if opaque:
        out += opaque
    else:
        if scheme or host or user:
            if host or path or user:
                out += "//"
            if user:
                out += _userinfo_string(*user) + "@"
            if host:
                out += _escape(host, "host")
        escaped = _escape(path, "path")
        if escaped and not escaped.startswith("/") and host:
            out += "/"
        if not out and ":" in escaped.split("/", 1)[0]:
            out += "./"
        out += escaped
    if query:
        out += "?" + query
    if fragment:
        out += "#" + _escape(fragment, "fragment")
    return out


# -- dicts (copystructure, mergo) ------------------------------------------------------


def _is_empty(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, bool):
        return not v
    if isinstance(v, int | float | str | list | tuple | Mapping):
        return not v
    return False


def _merge_into(dst: dict[str, Any], src: Mapping[str, Any], overwrite: bool) -> None:
    # mergo.Merge: nested maps merge in place; other values fill missing or empty
    # keys, or replace them with overwrite (WithOverride).
    for key, value in src.items():
        current = dst.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge_into(current, value, overwrite)
        if key in dst and not _is_empty(current) and isinstance(value, Mapping | list | tuple):
            continue
        if value is None and not overwrite:
            continue
        if overwrite or key not in dst or _is_empty(current):
            dst[key] = value


def _merge(overwrite: bool) -> Callable[..., Any]:
    def merge(dst: Any, *srcs: Any) -> Any:
        if isinstance(dst, Mapping) and not isinstance(dst, dict):
            dst = dict(dst)  # read-only feature data: merge into a copy
        if not isinstance(dst, dict):
            raise TemplateError(f"wrong type for value; expected map; got {go_type(dst)}")
        for src in srcs:
            if not isinstance(src, Mapping):
                raise TemplateError(f"wrong type for value; expected map; got {go_type(src)}")
            _merge_into(dst, src, overwrite)
        return dst

    return merge


def _type_is_like(target: Any, value: Any) -> bool:
    t = go_type(value)
    return target == t or "*" + _str(target) == t


# -- durations (time.Duration) ---------------------------------------------------------

_NS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9}
_NS.update({"m": 60 * 10**9, "h": 3600 * 10**9})
_MAX_DURATION = 2**63 - 1
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds."""
    orig = text
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None or (not m.group(1) and not m.group(2)):
            raise ValueError(f'time: invalid duration "{orig}"')
        unit = m.group(3)
        if unit == "":
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _NS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        whole = int(m.group(1) or "0") * _NS[unit]
        frac = m.group(2) or ""
        if frac:
            whole += int(frac) * _NS[unit] // 10 ** len(frac)
        total += whole
        if total > _MAX_DURATION + (1 if sign < 0 else 0):
            raise ValueError(f'time: invalid duration "{orig}"')
        pos = m.end()
    return sign * total


def format_go_duration(ns: int) -> str:
    """time.Duration.String: ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 10**9:
        for unit, size in (("ns", 1), ("µs", 10**3), ("ms", 10**6)):
            if u < size * 1000:
                return sign + _frac(u, size) + unit
    secs, hours = u, u // (3600 * 10**9)
    secs -= hours * 3600 * 10**9
    minutes = secs // (60 * 10**9)
    secs -= minutes * 60 * 10**9
    text = _frac(secs, 10**9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _frac(value: int, size: int) -> str:
    whole, rest = divmod(value, size)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _duration(sec: Any) -> str:
    from nfd.rules.template_funcs import to_int

    return format_go_duration(to_int(sec) * 10**9)


def _duration_round(value: Any) -> str:
    if isinstance(value, str):
        try:
            ns = parse_go_duration(value)
        except ValueError:
            ns = 0
    elif isinstance(value, GoTime):
        ns = int((_now() - value).total_seconds() * 10**9)
    elif isinstance(value, int) and not isinstance(value, bool):
        ns = value  # an int64 of nanoseconds, as time.Duration
    else:
        ns = 0
    u = abs(ns)
    day = 24 * 3600 * 10**9
    for size, unit in (
        (365 * day, "y"),
        (30 * day, "mo"),
        (day, "d"),
        (3600 * 10**9, "h"),
        (60 * 10**9, "m"),
        (10**9, "s"),
    ):
        if u > size:
            return f"{u // size}{unit}"
    return "0s"


# -- time ---------------------------------------------------------------------------


class GoTime(datetime):
    """A time.Time: always zone-aware; prints like Go's ``%v``."""

    def __str__(self) -> str:
        return format_go_time(self, "2006-01-02 15:04:05.999999999 -0700 MST")


GoTime.__name__ = "time.Time"  # what typeOf/typeIsLike report, as for Go's time.Time


def _go_time(dt: datetime) -> GoTime:
    return GoTime(
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, dt.tzinfo
    )


def _local_zone() -> tzinfo:
    return datetime.now().astimezone().tzinfo or UTC


def _now() -> GoTime:
    return _go_time(datetime.now().astimezone())


_LAYOUT_TOKENS = (
    "January", "Jan", "Monday", "Mon", "MST",
    "2006", "-07:00:00", "-070000", "-0700", "-07:00", "-07",
    "Z07:00:00", "Z070000", "Z0700", "Z07:00", "Z07",
    "002", "__2", "_2", "01", "02", "03", "04", "05", "06", "15",
    "PM", "pm", "1", "2", "3", "4", "5",
)  # fmt: skip
_FRAC_RE = re.compile(r"[.,](0+|9+)(?![0-9])")
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _tokens(layout: str) -> Iterator[tuple[str, str]]:
    """Split a Go reference-time layout into ("lit", text) and ("tok", name) pieces."""
    i = 0
    lit = ""
    while i < len(layout):
        frac = _FRAC_RE.match(layout, i) if layout[i] in ".," and i > 0 else None
        if frac and layout[i - 1] in string.digits:
            if lit:
                yield "lit", lit
                lit = ""
            yield "frac", frac.group(0)
            i = frac.end()
            continue
        for tok in _LAYOUT_TOKENS:
            if layout.startswith(tok, i):
                # "Jan"/"Mon" must not be the start of a longer lower-case word.
                if tok in ("Jan", "Mon") and layout[i + 3 : i + 4].islower():
                    continue
                if lit:
                    yield "lit", lit
                    lit = ""
                yield "tok", tok
                i += len(tok)
                break
        else:
            lit += layout[i]
            i += 1
    if lit:
        yield "lit", lit


def _offset(dt: datetime, colon: bool, seconds: bool, short: bool, zulu: bool) -> str:
    delta = dt.utcoffset() or timedelta(0)
    total = int(delta.total_seconds())
    if zulu and total == 0:
        return "Z"
    sign = "-" if total < 0 else "+"
    total = abs(total)
    hh, mm, ss = total // 3600, total // 60 % 60, total % 60
    sep = ":" if colon else ""
    if short:
        return f"{sign}{hh:02d}"
    text = f"{sign}{hh:02d}{sep}{mm:02d}"
    return text + f"{sep}{ss:02d}" if seconds else text


def format_go_time(dt: datetime, layout: str) -> str:
    """time.Time.Format with a Go reference-time layout ("2006-01-02 15:04:05")."""
    out = []
    for kind, tok in _tokens(layout):
        if kind == "lit":
            out.append(tok)
        elif kind == "frac":
            digits = f"{dt.microsecond:06d}000"[: len(tok) - 1]
            if tok[1] == "9":
                digits = digits.rstrip("0")
                out.append(tok[0] + digits if digits else "")
            else:
                out.append(tok[0] + digits)
        else:
            out.append(_format_token(dt, tok))
    return "".join(out)


def _format_token(dt: datetime, tok: str) -> str:
    hour12 = dt.hour % 12 or 12
    simple: dict[str, str] = {
        "January": _MONTHS[dt.month - 1],
        "Jan": _MONTHS[dt.month - 1][:3],
        "Monday": _DAYS[dt.weekday()],
        "Mon": _DAYS[dt.weekday()][:3],
        "2006": f"{dt.year:04d}",
        "06": f"{dt.year % 100:02d}",
        "01": f"{dt.month:02d}",
        "1": str(dt.month),
        "02": f"{dt.day:02d}",
        "2": str(dt.day),
        "_2": f"{dt.day:>2d}",
        "002": f"{dt.timetuple().tm_yday:03d}",
        "__2": f"{dt.timetuple().tm_yday:>3d}",
        "15": f"{dt.hour:02d}",
        "03": f"{hour12:02d}",
        "3": str(hour12),
        "04": f"{dt.minute:02d}",
        "4": str(dt.minute),
        "05": f"{dt.second:02d}",
        "5": str(dt.second),
        "PM": "PM" if dt.hour >= 12 else "AM",
        "pm": "pm" if dt.hour >= 12 else "am",
    }
    if tok in simple:
        return simple[tok]
    if tok == "MST":
        name = dt.tzname()
        return name if name and name[:1].isalpha() else _offset(dt, False, False, False, False)
    zulu = tok.startswith("Z")
    body = tok[1:] if zulu else tok
    return _offset(dt, ":" in body, len(body.replace(":", "")) == 7, body == "-07", zulu)


def parse_go_time(layout: str, value: str, zone: tzinfo) -> GoTime:
    """time.ParseInLocation for the common layout elements."""
    pattern = []
    names: list[str] = []
    for kind, tok in _tokens(layout):
        if kind == "lit":
            pattern.append(re.escape(tok))
        elif kind == "frac":
            pattern.append(r"(?:[.,](?P<frac>[0-9]+))" + ("?" if tok[1] == "9" else ""))
        else:
            group = f"g{len(names)}"
            names.append(tok)
            pattern.append(f"(?P<{group}>{_token_pattern(tok)})")
    try:
        # RE2: a layout of many adjacent numeric elements would backtrack badly in re.
        m = compile_re2("".join(pattern)).fullmatch(value)
    except RegexError as err:
        raise TemplateError(f'parsing time "{value}" as "{layout}": {err}') from None
    if m is None:
        raise TemplateError(f'parsing time "{value}" as "{layout}": cannot parse')
    year, month, day, hour, minute, second = 1, 1, 1, 0, 0, 0
    pm: bool | None = None
    tz: tzinfo | None = None
    for i, tok in enumerate(names):
        text = m.group(f"g{i}")
        if tok == "2006":
            year = int(text)
        elif tok == "06":
            year = int(text) + (1900 if int(text) >= 69 else 2000)
        elif tok in ("January", "Jan"):
            month = [n[: len(text)].lower() for n in _MONTHS].index(text.lower()) + 1
        elif tok in ("01", "1"):
            month = int(text)
        elif tok in ("02", "2", "_2"):
            day = int(text)
        elif tok in ("15", "03", "3"):
            hour = int(text)
        elif tok in ("04", "4"):
            minute = int(text)
        elif tok in ("05", "5"):
            second = int(text)
        elif tok in ("PM", "pm"):
            pm = text.lower() == "pm"
        elif tok.startswith(("-", "Z")):
            tz = _parse_offset(text)
    if pm is not None and hour < 12 and pm:
        hour += 12
    elif pm is False and hour == 12:
        hour = 0
    frac = m.groupdict().get("frac") or "0"
    micro = int((frac + "000000")[:6])
    try:
        dt = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz or zone)
    except ValueError as err:
        raise TemplateError(f'parsing time "{value}": {err}') from None
    return _go_time(dt)


def _token_pattern(tok: str) -> str:
    if tok == "January":
        return "|".join(_MONTHS)
    if tok == "Jan":
        return "|".join(n[:3] for n in _MONTHS)
    if tok == "Monday":
        return "|".join(_DAYS)
    if tok == "Mon":
        return "|".join(d[:3] for d in _DAYS)
    if tok == "MST":
        return "[A-Z]{3,5}|[+-][0-9]{2,4}"
    if tok in ("PM", "pm"):
        return "[AaPp][Mm]"
    if tok.startswith(("-", "Z")):
        return ("Z|" if tok.startswith("Z") else "") + r"[+-][0-9]{2}(?::?[0-9]{2}){0,2}"
    if tok == "2006":
        return "[0-9]{4}"
    if tok in ("_2", "__2"):
        return " ?[0-9]{1,3}"
    if len(tok) == 2 or tok == "002":
        return f"[0-9]{{{len(tok)}}}"
    return "[0-9]{1,2}"


def _parse_offset(text: str) -> tzinfo:
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hh, mm, ss = int(digits[0:2]), int(digits[2:4] or 0), int(digits[4:6] or 0)
    return timezone(sign * timedelta(hours=hh, minutes=mm, seconds=ss))


def _load_zone(name: str) -> tzinfo:
    if name == "Local":
        return _local_zone()
    if name in ("", "UTC"):
        return UTC
    try:
        from zoneinfo import ZoneInfo  # only templates that name a zone pay for it

        return ZoneInfo(name)
    except (LookupError, ValueError):
        return UTC  # Sprig falls back to UTC for an unknown zone


def _as_time(value: Any) -> GoTime:
    # Sprig: time.Time as is, integers are Unix seconds, anything else is now.
    if isinstance(value, datetime):
        return _go_time(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _go_time(datetime.fromtimestamp(value, UTC).astimezone(_local_zone()))
    return _now()


def _date_in_zone(layout: Any, value: Any, zone: Any) -> str:
    return format_go_time(_as_time(value).astimezone(_load_zone(_str(zone))), _str(layout))


def _require_time(value: Any, func: str) -> GoTime:
    if not isinstance(value, datetime):
        raise TemplateError(f"{func}: expected time.Time; got {go_type(value)}")
    return _go_time(value)


def _date_modify(strict: bool) -> Callable[[Any, Any], GoTime]:
    def modify(fmt: Any, value: Any) -> GoTime:
        t = _require_time(value, "dateModify")
        try:
            ns = parse_go_duration(_str(fmt))
        except ValueError as err:
            if strict:
                raise TemplateError(str(err)) from None
            return t
        return _go_time(t + timedelta(microseconds=ns // 1000))

    return modify


def _to_date(strict: bool) -> Callable[[Any, Any], GoTime]:
    def to_date(layout: Any, value: Any) -> GoTime:
        try:
            return parse_go_time(_str(layout), _str(value), _local_zone())
        except TemplateError:
            if strict:
                raise
            return _go_time(datetime(1, 1, 1, tzinfo=UTC))  # Go's zero time

    return to_date


def _ago(value: Any) -> str:
    seconds = round((_now() - _as_time(value)).total_seconds())
    return format_go_duration(seconds * 10**9)


# -- random ---------------------------------------------------------------------------


def _rand_chars(alphabet: str) -> Callable[[Any], str]:
    def rand(count: Any) -> str:
        from nfd.rules.template_funcs import to_int

        n = to_int(count)
        if n < 0:
            raise TemplateError(f"Requested random string length {n} is less than 0.")
        _check_size(n)
        return "".join(secrets.choice(alphabet) for _ in range(n))

    return rand


def _rand_int(low: Any, high: Any) -> int:
    from nfd.rules.template_funcs import to_int

    lo, hi = to_int(low), to_int(high)
    if hi <= lo:
        raise TemplateError("invalid argument to Intn")  # Go's rand.Intn panics on n <= 0
    return lo + secrets.randbelow(hi - lo)


def _rand_bytes(count: Any) -> str:
    from nfd.rules.template_funcs import to_int

    n = to_int(count)
    if n < 0:
        raise TemplateError(f"Requested random bytes length {n} is less than 0.")
    _check_size(n)
    return base64.b64encode(secrets.token_bytes(n)).decode()


def _check_size(n: int) -> None:
    # Nothing bigger than the template output limit can be used, so refuse to build it.
    from nfd.rules.template import MAX_OUTPUT

    if n > MAX_OUTPUT:
        raise TemplateError(f"random length {n} exceeds the template output limit ({MAX_OUTPUT})")


def _shuffle(text: Any) -> str:
    chars = list(_str(text))
    random.SystemRandom().shuffle(chars)
    return "".join(chars)


def _str(v: Any) -> str:
    from nfd.rules.template_funcs import strval

    return strval(v)


SPRIG_MORE: dict[str, Callable[..., Any]] = {
    "semver": _semver,
    "semverCompare": _semver_compare,
    "osBase": lambda s: go_base(_str(s)),
    "osClean": lambda s: go_clean(_str(s)),
    "osDir": lambda s: go_dir(_str(s)),
    "osExt": lambda s: go_ext(_str(s)),
    "osIsAbs": lambda s: _str(s).startswith("/"),
    "urlParse": lambda s: parse_url(_str(s)),
    "urlJoin": join_url,
    "deepCopy": copy.deepcopy,
    "mustDeepCopy": copy.deepcopy,
    "merge": _merge(False),
    "mustMerge": _merge(False),
    "mergeOverwrite": _merge(True),
    "mustMergeOverwrite": _merge(True),
    "typeIsLike": _type_is_like,
    "duration": _duration,
    "durationRound": _duration_round,
    "now": _now,
    "date": lambda layout, value: _date_in_zone(layout, value, "Local"),
    "dateInZone": _date_in_zone,
    "date_in_zone": _date_in_zone,
    "htmlDate": lambda value: _date_in_zone("2006-01-02", value, "Local"),
    "htmlDateInZone": lambda value, zone: _date_in_zone("2006-01-02", value, zone),
    "dateModify": _date_modify(False),
    "date_modify": _date_modify(False),
    "mustDateModify": _date_modify(True),
    "toDate": _to_date(False),
    "mustToDate": _to_date(True),
    "unixEpoch": lambda t: str(int(_require_time(t, "unixEpoch").timestamp())),
    "ago": _ago,
    "randAlpha": _rand_chars(string.ascii_letters),
    "randAlphaNum": _rand_chars(string.ascii_letters + string.digits),
    "randAscii": _rand_chars("".join(chr(c) for c in range(32, 127))),
    "randNumeric": _rand_chars(string.digits),
    "randInt": _rand_int,
    "randBytes": _rand_bytes,
    "shuffle": _shuffle,
    "uuidv4": lambda: str(__import__("uuid").uuid4()),
}


def _dig(*args: Any) -> Any:
    """Sprig dig: ``dig "a" "b" default dict`` walks nested dicts, default when a key is missing."""
    if len(args) < 3:
        raise TemplateError(f"dig needs at least three arguments, got {len(args)}")
    *keys, default, d = args
    if not isinstance(d, Mapping):
        raise TemplateError(
            f"wrong type for value; expected map[string]interface {{}}; got {go_type(d)}"
        )
    for i, key in enumerate(keys):
        if not isinstance(d, Mapping) or _str(key) not in d:
            return default
        d = d[_str(key)]
        if i == len(keys) - 1:
            return d
    return default


def _chunk(size: Any, lst: Any) -> list[list[Any]]:
    from nfd.rules.template_funcs import to_int

    n = to_int(size)
    if not isinstance(lst, list | tuple):
        raise TemplateError(f"Cannot chunk type {go_type(lst)}")
    if n < 1:
        raise TemplateError("chunk size must be at least 1")  # Go divides by zero here
    return [list(lst[i : i + n]) for i in range(0, len(lst), n)]


SPRIG_MORE.update({"dig": _dig, "chunk": _chunk, "mustChunk": _chunk})


# -- derivePassword (Master Password algorithm, as Sprig) --------------------------------------

_MP_SEED = b"com.lyndir.masterpassword"
_MP_TEMPLATES = {
    "maximum": ["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
    "long": [
        a + b + c
        for a, b, c in (
            ("Cvcvno", "Cvcv", "Cvcv"), ("Cvcv", "Cvcvno", "Cvcv"), ("Cvcv", "Cvcv", "Cvcvno"),
            ("Cvccno", "Cvcv", "Cvcv"), ("Cvcc", "Cvcvno", "Cvcv"), ("Cvcc", "Cvcv", "Cvcvno"),
            ("Cvcvno", "Cvcc", "Cvcv"), ("Cvcv", "Cvccno", "Cvcv"), ("Cvcv", "Cvcc", "Cvcvno"),
            ("Cvcvno", "Cvcv", "Cvcc"), ("Cvcv", "Cvcvno", "Cvcc"), ("Cvcv", "Cvcv", "Cvccno"),
            ("Cvccno", "Cvcc", "Cvcv"), ("Cvcc", "Cvccno", "Cvcv"), ("Cvcc", "Cvcc", "Cvcvno"),
            ("Cvcvno", "Cvcc", "Cvcc"), ("Cvcv", "Cvccno", "Cvcc"), ("Cvcv", "Cvcc", "Cvccno"),
            ("Cvccno", "Cvcv", "Cvcc"), ("Cvcc", "Cvcvno", "Cvcc"), ("Cvcc", "Cvcv", "Cvccno"),
        )
    ],
    "medium": ["CvcnoCvc", "CvcCvcno"],
    "short": ["Cvcn"],
    "basic": ["aaanaaan", "aannaaan", "aaannaaa"],
    "pin": ["nnnn"],
}  # fmt: skip
_MP_CHARS = {
    "V": "AEIOU",
    "C": "BCDFGHJKLMNPQRSTVWXYZ",
    "v": "aeiou",
    "c": "bcdfghjklmnpqrstvwxyz",
    "A": "AEIOUBCDFGHJKLMNPQRSTVWXYZ",
    "a": "AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
    "n": "0123456789",
    "o": "@&%?,=[]_:-+*$#!'^~;()/.",
    "x": "AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
}


@lru_cache(maxsize=16)
def _master_key(password: str, user: str) -> bytes:
    # ~0.25 s of scrypt: cached so a template deriving many site passwords pays it once.
    import hashlib

    user_b = user.encode()
    salt = _MP_SEED + len(user_b).to_bytes(4, "big") + user_b
    # scrypt N=32768, r=8, p=2 needs 32 MiB; OpenSSL's default cap is exactly that.
    return hashlib.scrypt(
        password.encode(), salt=salt, n=32768, r=8, p=2, maxmem=64 << 20, dklen=64
    )


def _derive_password(counter: Any, kind: Any, password: Any, user: Any, site: Any) -> str:
    import hashlib
    import hmac

    from nfd.rules.template_funcs import to_int

    templates = _MP_TEMPLATES.get(_str(kind))
    if templates is None:
        return f"cannot find password template {_str(kind)}"
    site_b = _str(site).encode()
    key = _master_key(_str(password), _str(user))
    message = _MP_SEED + len(site_b).to_bytes(4, "big") + site_b
    message += (to_int(counter) & 0xFFFFFFFF).to_bytes(4, "big")
    seed = hmac.new(key, message, hashlib.sha256).digest()
    template = templates[seed[0] % len(templates)]
    return "".join(_MP_CHARS[ch][seed[i + 1] % len(_MP_CHARS[ch])] for i, ch in enumerate(template))


SPRIG_MORE["derivePassword"] = _derive_password


# -- encryptAES / decryptAES (AES-256-CBC, PKCS#7 padding, IV first; as Sprig) ------------------
# The standard library has no AES and nfd takes no crypto dependency, so this is a small,
# table-driven AES; it is only for templates, which Sprig allows to use it.


def _xtime(a: int) -> int:
    a <<= 1
    return (a ^ 0x11B) if a & 0x100 else a


def _gmul(a: int, b: int) -> int:
    out = 0
    while b:
        if b & 1:
            out ^= a
        a, b = _xtime(a), b >> 1
    return out


def _build_sbox() -> tuple[list[int], list[int]]:
    # S-box = affine transform of the multiplicative inverse in GF(2^8).
    inverse = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if _gmul(a, b) == 1:
                inverse[a] = b
                break
    sbox = []
    for a in range(256):
        x = inverse[a]
        y = x
        for shift in range(1, 5):
            y ^= ((x << shift) | (x >> (8 - shift))) & 0xFF
        sbox.append(y ^ 0x63)
    inv = [0] * 256
    for i, v in enumerate(sbox):
        inv[v] = i
    return sbox, inv


_SBOX: list[int] = []
_INV_SBOX: list[int] = []
_MUL: dict[int, list[int]] = {}


def _init_tables() -> None:
    # Built on first use: ~0.1 s that worker start-up should not pay.
    if not _SBOX:
        sbox, inv = _build_sbox()
        _MUL.update({n: [_gmul(a, n) for a in range(256)] for n in (2, 3, 9, 11, 13, 14)})
        _INV_SBOX[:] = inv
        _SBOX[:] = sbox


def _expand_key(key: bytes) -> list[list[int]]:
    words = [list(key[i : i + 4]) for i in range(0, 32, 4)]
    rcon = 1
    for i in range(8, 60):
        t = list(words[i - 1])
        if i % 8 == 0:
            t = [_SBOX[b] for b in t[1:] + t[:1]]
            t[0] ^= rcon
            rcon = _xtime(rcon)
        elif i % 8 == 4:
            t = [_SBOX[b] for b in t]
        words.append([words[i - 8][j] ^ t[j] for j in range(4)])
    return [sum(words[4 * r : 4 * r + 4], []) for r in range(15)]


def _encrypt_block(block: list[int], keys: list[list[int]]) -> list[int]:
    s = [b ^ k for b, k in zip(block, keys[0], strict=True)]
    m2, m3 = _MUL[2], _MUL[3]
    for rnd in range(1, 15):
        s = [_SBOX[b] for b in s]
        s = [s[r + 4 * ((c + r) % 4)] for c in range(4) for r in range(4)]
        if rnd < 14:
            mixed = []
            for c in range(4):
                a0, a1, a2, a3 = s[4 * c : 4 * c + 4]
                mixed += [
                    m2[a0] ^ m3[a1] ^ a2 ^ a3,
                    a0 ^ m2[a1] ^ m3[a2] ^ a3,
                    a0 ^ a1 ^ m2[a2] ^ m3[a3],
                    m3[a0] ^ a1 ^ a2 ^ m2[a3],
                ]
            s = mixed
        s = [b ^ k for b, k in zip(s, keys[rnd], strict=True)]
    return s


def _decrypt_block(block: list[int], keys: list[list[int]]) -> list[int]:
    s = [b ^ k for b, k in zip(block, keys[14], strict=True)]
    m9, m11, m13, m14 = _MUL[9], _MUL[11], _MUL[13], _MUL[14]
    for rnd in range(13, -1, -1):
        shifted = [0] * 16
        for c in range(4):
            for r in range(4):
                shifted[r + 4 * ((c + r) % 4)] = s[r + 4 * c]
        s = [_INV_SBOX[b] for b in shifted]
        s = [b ^ k for b, k in zip(s, keys[rnd], strict=True)]
        if rnd > 0:
            mixed = []
            for c in range(4):
                a0, a1, a2, a3 = s[4 * c : 4 * c + 4]
                mixed += [
                    m14[a0] ^ m11[a1] ^ m13[a2] ^ m9[a3],
                    m9[a0] ^ m14[a1] ^ m11[a2] ^ m13[a3],
                    m13[a0] ^ m9[a1] ^ m14[a2] ^ m11[a3],
                    m11[a0] ^ m13[a1] ^ m9[a2] ^ m14[a3],
                ]
            s = mixed
    return s


# Pure-Python AES runs at ~8 ms/KiB; rule templates are at most 64 KiB, so is AES input.
_MAX_AES_INPUT = 64 * 1024


def _check_aes_size(n: int) -> None:
    if n > _MAX_AES_INPUT:
        raise TemplateError(f"AES input of {n} bytes exceeds the limit ({_MAX_AES_INPUT})")


def _aes_key(password: Any) -> list[list[int]]:
    # Sprig copies the password into a zeroed 32-byte key (AES-256), truncating longer ones.
    _init_tables()
    return _expand_key(_str(password).encode()[:32].ljust(32, b"\0"))


def encrypt_aes(password: Any, plaintext: Any) -> str:
    text = _str(plaintext).encode()
    if not text:
        return ""
    _check_aes_size(len(text))
    keys = _aes_key(password)
    pad = 16 - len(text) % 16
    data = text + bytes([pad]) * pad
    prev = list(secrets.token_bytes(16))
    out = bytes(prev)
    for i in range(0, len(data), 16):
        prev = _encrypt_block([b ^ p for b, p in zip(data[i : i + 16], prev, strict=True)], keys)
        out += bytes(prev)
    return base64.b64encode(out).decode()


def decrypt_aes(password: Any, crypt64: Any) -> str:
    text = _str(crypt64)
    if not text:
        return ""
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError as err:
        raise TemplateError(f"illegal base64 data: {err}") from None
    _check_aes_size(len(data))
    if len(data) < 32 or len(data) % 16:
        raise TemplateError("crypto/cipher: input not full blocks")
    keys = _aes_key(password)
    prev = list(data[:16])
    out = bytearray()
    for i in range(16, len(data), 16):
        block = list(data[i : i + 16])
        out += bytes(b ^ p for b, p in zip(_decrypt_block(block, keys), prev, strict=True))
        prev = block
    pad = out[-1]
    if pad > len(out):
        raise TemplateError("slice bounds out of range")  # Go panics here
    return bytes(out[: len(out) - pad]).decode("utf-8", "replace")


SPRIG_MORE["encryptAES"] = encrypt_aes
SPRIG_MORE["decryptAES"] = decrypt_aes
