"""Durations and dates: Go's time.Duration and time.Time as Sprig's date functions use them."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from nfd.regex import RegexError, compile_re2
from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.common import strval, to_int
from nfd.rules.template.values import go_type

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
    return format_go_time(_as_time(value).astimezone(_load_zone(strval(zone))), strval(layout))


def _require_time(value: Any, func: str) -> GoTime:
    if not isinstance(value, datetime):
        raise TemplateError(f"{func}: expected time.Time; got {go_type(value)}")
    return _go_time(value)


def _date_modify(strict: bool) -> Callable[[Any, Any], GoTime]:
    def modify(fmt: Any, value: Any) -> GoTime:
        t = _require_time(value, "dateModify")
        try:
            ns = parse_go_duration(strval(fmt))
        except ValueError as err:
            if strict:
                raise TemplateError(str(err)) from None
            return t
        return _go_time(t + timedelta(microseconds=ns // 1000))

    return modify


def _to_date(strict: bool) -> Callable[[Any, Any], GoTime]:
    def to_date(layout: Any, value: Any) -> GoTime:
        try:
            return parse_go_time(strval(layout), strval(value), _local_zone())
        except TemplateError:
            if strict:
                raise
            return _go_time(datetime(1, 1, 1, tzinfo=UTC))  # Go's zero time

    return to_date


def _ago(value: Any) -> str:
    seconds = round((_now() - _as_time(value)).total_seconds())
    return format_go_duration(seconds * 10**9)


DATES: dict[str, Callable[..., Any]] = {
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
}
