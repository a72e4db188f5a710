"""Functions available in rule templates: Go's builtins and Sprig's, as upstream.

Upstream registers ``sprig.TxtFuncMap()`` minus ``env``, ``expandenv`` and
``getHostByName``. We implement the Sprig functions that make sense for
feature data (strings, lists, dicts, math, regexps, encodings); the rest
(dates, crypto, random) fail at parse time with a clear message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import posixpath
import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

from nfd.regex import RegexError, compile_re2
from nfd.rules.errors import TemplateError
from nfd.rules.template import go_float, go_print, go_sprint_value, go_type, truth

REMOVED_FUNCS = {"env", "expandenv", "getHostByName"}
UNSUPPORTED_SPRIG = {
    "bcrypt",
    "buildCustomCert",
    "genCA",
    "genCAWithKey",
    "genPrivateKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "htpasswd",
    "call",
    "getHostByName",
    "regexReplaceAllLiteral_",
}


def _fail(message: str) -> TemplateError:
    return TemplateError(message)


# What one function call may build. A template asking for more gets an error instead of
# costing nfd-master or nfd-worker all its memory (Go's fmt caps widths at 1e6 too).
MAX_RESULT = 1 << 20
MAX_LIST = 100_000
MAX_FMT_WIDTH = 1_000_000


def _check_size(size: int, what: str) -> None:
    if size > MAX_RESULT:
        raise _fail(f"{what}: result of {size} bytes is over the {MAX_RESULT}-byte limit")


def _check_count(count: int, what: str) -> None:
    if count > MAX_LIST:
        raise _fail(f"{what}: {count} elements is over the {MAX_LIST}-element limit")


def _repeat(n: Any, s: Any) -> str:
    count, text = max(to_int(n), 0), strval(s)
    _check_size(count * len(text), "repeat")
    return text * count


def _until(n: Any) -> list[int]:
    count = to_int(n)
    _check_count(abs(count), "until")
    return list(range(count)) if count >= 0 else list(range(0, count, -1))


# -- Go builtins ----------------------------------------------------------------

_BASIC = (bool, int, float, str)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "nil"
    return "other"


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _fail("missing argument for comparison")
    for b in others:
        if a is None or b is None:
            if a is None and b is None:
                return True
            continue
        ka, kb = _kind(a), _kind(b)
        if ka == "other" or kb == "other":
            raise _fail("non-comparable type")
        if ka != kb:
            raise _fail("incompatible types for comparison")
        if a == b:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _order(a: Any, b: Any) -> int:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise _fail("invalid type for comparison")
    if ka != kb:
        raise _fail("incompatible types for comparison")
    return (a > b) - (a < b)


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8"))
    if isinstance(v, list | tuple | Mapping):
        return len(v)
    raise _fail(f"len of type {go_type(v)}")


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            if key in item:
                item = item[key]
            else:
                # Go returns the element type's zero value.
                item = "" if item and all(isinstance(v, str) for v in item.values()) else None
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _fail(f"cannot index slice/array with type {go_type(key)}")
            if key < 0 or key >= len(item):
                raise _fail(f"index out of range: {key}")
            item = item[key] if not isinstance(item, str) else item.encode()[key]
        elif item is None:
            raise _fail("index of untyped nil")
        else:
            raise _fail(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, list | tuple | str):
        raise _fail(f"can't slice item of type {go_type(item)}")
    if len(idx) > 3:
        raise _fail("too many slice indexes")
    bounds = [int(i) for i in idx]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise _fail(f"slice index out of range: {start}:{end}")
    return item[start:end]


def _sprint(*args: Any) -> str:
    # fmt.Sprint: spaces between operands when neither side is a string.
    out = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_sprint_value(a))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(go_sprint_value(a) for a in args) + "\n"


def go_quote(s: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_VERB_RE = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+))?([a-zA-Z%])")


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the common verbs: v s d q x X o b f F e E g G t c %."""
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB_RE.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        # Go's fmt refuses widths and precisions over 1e6 (%!(BADWIDTH), %!(BADPREC)).
        if width and width.isdigit() and int(width) > MAX_FMT_WIDTH:
            out.append("%!(BADWIDTH)")
            width = None
        if prec and prec.isdigit() and int(prec) > MAX_FMT_WIDTH:
            out.append("%!(BADPREC)")
            prec = None
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(flags, width, prec, verb, arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={go_sprint_value(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _format_one(flags: str, width: str | None, prec: str | None, verb: str, arg: Any) -> str:
    spec = flags.replace("#", "") + (width or "") + (f".{prec}" if prec is not None else "")
    try:
        if verb in "vs":
            text = go_sprint_value(arg)
            if prec is not None:
                text = text[: int(prec)]
            return format(text, ("<" if "-" in flags else ">") + (width or ""))
        if verb == "q":
            return go_quote(arg if isinstance(arg, str) else go_sprint_value(arg))
        if verb == "t" and isinstance(arg, bool):
            return "true" if arg else "false"
        if isinstance(arg, bool):
            raise ValueError
        if verb in "dxXob" and isinstance(arg, int):
            return format(arg, spec.replace("-", "<") + verb.replace("d", "d"))
        if verb in "xX" and isinstance(arg, str):
            return arg.encode().hex() if verb == "x" else arg.encode().hex().upper()
        if verb == "c" and isinstance(arg, int):
            return chr(arg)
        if verb in "fFeEgG" and isinstance(arg, int | float):
            if verb in "gG" and prec is None:
                return go_float(float(arg))
            p = "6" if prec is None else prec
            return format(float(arg), f"{flags.replace('-', '<')}{width or ''}.{p}{verb}")
    except (ValueError, TypeError):
        pass
    return f"%!{verb}({go_type(arg)}={go_sprint_value(arg)})"


def _html(*args: Any) -> str:
    s = _sprint(*args)
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
        .replace("\x00", "\ufffd")
    )


def _js(*args: Any) -> str:
    s = _sprint(*args)
    out = []
    for ch in s:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch in "<>&=" or ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    return quote_plus(_sprint(*args), safe="")


def _not(v: Any) -> bool:
    return not truth(v)


# -- Sprig ---------------------------------------------------------------------


def strval(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return go_sprint_value(v)


def to_int(v: Any) -> int:
    """cast.ToInt64 as Sprig uses it: strings parsed, floats truncated, junk is 0."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        text = v.strip()
        try:
            return int(text, 0) if not re.fullmatch(r"[+-]?0[0-9]+", text) else int(text, 8)
        except ValueError:
            try:
                return int(float(text))
            except ValueError:
                return 0
    return 0


def to_float(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return 0.0
    return 0.0


def _go_div(a: int, b: int) -> int:
    if b == 0:
        raise _fail("integer divide by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _go_mod(a: int, b: int) -> int:
    if b == 0:
        raise _fail("integer divide by zero")
    return a - b * _go_div(a, b)


def empty(v: Any) -> bool:
    return not truth(v)


def _default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


def _coalesce(*vals: Any) -> Any:
    for v in vals:
        if not empty(v):
            return v
    return None


def _to_list(v: Any) -> list[Any]:
    if isinstance(v, list | tuple):
        return list(v)
    if v is None:
        return []
    raise _fail(f"cannot find list type from {go_type(v)}")


def _strslice(v: Any) -> list[str]:
    if isinstance(v, list | tuple):
        return [strval(x) for x in v if x is not None]
    if v is None:
        return []
    return [strval(v)]


def _dict(*kv: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(kv), 2):
        out[strval(kv[i])] = kv[i + 1] if i + 1 < len(kv) else ""
    return out


def _keys(*dicts: Any) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out.extend(sorted(d))
    return out


def _values(d: Mapping[str, Any]) -> list[Any]:
    return [d[k] for k in sorted(d)]


def _uniq(v: Any) -> list[Any]:
    out: list[Any] = []
    for x in _to_list(v):
        if x not in out:
            out.append(x)
    return out


def _regex(pattern: str) -> Any:
    try:
        return compile_re2(pattern)
    except RegexError as err:
        raise _fail(str(err)) from None


def _go_template_repl(repl: str) -> Callable[[Any], str]:
    """Go's Regexp.Expand syntax ($1, ${1}, ${name}) as a replacement function."""
    token = re.compile(r"\$(\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")

    def expand(m: Any) -> str:
        def sub(t: Any) -> str:
            if t.group(1) == "$":
                return "$"
            name = t.group(2) or t.group(3)
            try:
                value = m.group(int(name)) if name.isascii() and name.isdigit() else m.group(name)
            except (IndexError, KeyError, ValueError, re.error):
                return ""
            return value or ""

        return token.sub(sub, repl)

    return expand


def _regex_find_all(pattern: str, s: str, n: int) -> list[str]:
    found = [m.group(0) for m in _regex(pattern).finditer(s)]
    return found if n < 0 else found[:n]


def _regex_split(pattern: str, s: str, n: int) -> list[str]:
    if n == 0:
        return []
    parts: list[str] = []
    pos = 0
    for m in _regex(pattern).finditer(s):
        if n > 0 and len(parts) == n - 1:
            break
        if m.end() == 0 and m.start() == 0:
            continue
        parts.append(s[pos : m.start()])
        pos = m.end()
    parts.append(s[pos:])
    return parts


def _title(s: str) -> str:
    out = []
    prev = " "
    for ch in s:
        out.append(ch.upper() if not (prev.isalnum() or prev == "_" or prev == "'") else ch)
        prev = ch
    return "".join(out)


def _untitle(s: str) -> str:
    out = []
    prev = " "
    for ch in s:
        out.append(ch.lower() if prev.isspace() else ch)
        prev = ch
    return "".join(out)


def _substr(start: Any, end: Any, s: str) -> str:
    start, end = to_int(start), to_int(end)
    if start < 0:
        return s[:end]
    if end < 0 or end > len(s):
        return s[start:]
    return s[start:end]


def _trunc(c: Any, s: str) -> str:
    c = to_int(c)
    if c < 0 and len(s) + c > 0:
        return s[len(s) + c :]
    if c >= 0 and len(s) > c:
        return s[:c]
    return s


def _abbrev(width: Any, s: str) -> str:
    width = to_int(width)
    if width < 4 or len(s) <= width:
        return s
    return s[: width - 3] + "..."


def _indent(spaces: Any, s: str) -> str:
    _check_size(max(to_int(spaces), 0) * (s.count("\n") + 1) + len(s), "indent")
    pad = " " * to_int(spaces)
    return pad + s.replace("\n", "\n" + pad)


def _snake(s: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", s)
    return re.sub(r"[-\s]+", "_", s).lower()


def _camel(s: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[_\-\s]+", s) if p)


def _kebab(s: str) -> str:
    return _snake(s).replace("_", "-")


def _plural(one: str, many: str, count: Any) -> str:
    return one if to_int(count) == 1 else many


def _seq(*params: Any) -> str:
    nums = [to_int(p) for p in params]
    if len(nums) == 1:
        start, step, end = 1, 1, nums[0]
    elif len(nums) == 2:
        start, end = nums
        step = 1 if end >= start else -1
    elif len(nums) == 3:
        start, step, end = nums
    else:
        return ""
    if step == 0 or (step > 0 and start > end) or (step < 0 and start < end):
        return ""
    _check_count(len(range(start, end + (1 if step > 0 else -1), step)), "seq")
    out = []
    i = start
    while (step > 0 and i <= end) or (step < 0 and i >= end):
        out.append(str(i))
        i += step
    return " ".join(out)


def _until_step(start: Any, stop: Any, step: Any) -> list[int]:
    a, b, s = to_int(start), to_int(stop), to_int(step)
    if s == 0 or (s > 0 and a >= b) or (s < 0 and a <= b):
        return []
    _check_count(len(range(a, b, s)), "untilStep")
    return list(range(a, b, s))


def _to_json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def _b64dec(s: str) -> str:
    try:
        return base64.b64decode(s, validate=True).decode("utf-8", "replace")
    except ValueError as err:
        return str(err)


def _kind_of(v: Any) -> str:
    k = go_type(v)
    return {"[]interface {}": "slice", "map[string]interface {}": "map", "<nil>": "invalid"}.get(
        k, k
    )


def _get(d: Mapping[str, Any], key: str) -> Any:
    return d.get(key, "")


def _set(d: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    d[key] = value
    return d


def _unset(d: dict[str, Any], key: str) -> dict[str, Any]:
    d.pop(key, None)
    return d


def _pick(d: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _omit(d: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _fail_func(msg: str) -> Any:
    raise _fail(msg)


def _max(a: Any, *rest: Any) -> int:
    return max([to_int(a)] + [to_int(x) for x in rest])


def _min(a: Any, *rest: Any) -> int:
    return min([to_int(a)] + [to_int(x) for x in rest])


def _round(a: Any, p: Any, r_opt: Any = 0.5) -> float:
    import math

    value = to_float(a)
    pow10 = 10 ** to_int(p)
    digit = pow10 * value
    _, div = divmod(digit, 1)
    rounded = math.ceil(digit) if div >= to_float(r_opt) else math.floor(digit)
    return rounded / pow10


def _atoi(s: Any) -> int:
    from nfd.rules.expression import parse_int

    return parse_int(strval(s)) or 0


def _without(lst: Any, *omit: Any) -> list[Any]:
    return [x for x in _to_list(lst) if x not in omit]


def _has(needle: Any, haystack: Any) -> bool:
    return haystack is not None and needle in _to_list(haystack)


def _initials(s: str) -> str:
    return "".join(w[0] for w in s.split() if w)


def _swapcase(s: str) -> str:
    return s.swapcase()


def _wrap(width: Any, s: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(s, to_int(width))) if s else s


def _cat(*args: Any) -> str:
    return " ".join(strval(a) for a in args if a is not None)


def _quote(*args: Any) -> str:
    return " ".join(go_quote(strval(a)) for a in args if a is not None)


def _squote(*args: Any) -> str:
    return " ".join(f"'{strval(a)}'" for a in args if a is not None)


def _split(sep: str, s: str) -> dict[str, str]:
    return {f"_{i}": part for i, part in enumerate(s.split(sep) if sep else list(s))}


def _splitn(sep: str, n: Any, s: str) -> dict[str, str]:
    n = to_int(n)
    parts = s.split(sep, n - 1) if n > 0 else []
    return {f"_{i}": part for i, part in enumerate(parts)}


def _split_list(sep: str, s: str) -> list[str]:
    return s.split(sep) if sep else list(s)


def _list_op(name: str) -> Callable[..., Any]:
    def first(v: Any) -> Any:
        lst = _to_list(v)
        return lst[0] if lst else None

    def last(v: Any) -> Any:
        lst = _to_list(v)
        return lst[-1] if lst else None

    ops: dict[str, Callable[..., Any]] = {
        "first": first,
        "last": last,
        "rest": lambda v: _to_list(v)[1:],
        "initial": lambda v: _to_list(v)[:-1],
        "reverse": lambda v: list(reversed(_to_list(v))),
        "compact": lambda v: [x for x in _to_list(v) if not empty(x)],
    }
    return ops[name]


def _regex_func(kind: str) -> Callable[..., Any]:
    if kind == "match":
        return lambda p, s: _regex(p).search(strval(s)) is not None
    if kind == "find":

        def find(p: str, s: str) -> str:
            m = _regex(p).search(strval(s))
            return m.group(0) if m else ""

        return find
    if kind == "replace":
        return lambda p, s, r: _regex(p).sub(_go_template_repl(strval(r)), strval(s))
    return lambda p, s, r: _regex(p).sub(lambda _m: strval(r), strval(s))


FUNCS: dict[str, Callable[..., Any]] = {
    # Go builtins
    "and": lambda *a: a[-1],
    "or": lambda *a: a[-1],
    "not": _not,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _sprint,
    "printf": go_sprintf,
    "println": _sprintln,
    "eq": _eq,
    "ne": _ne,
    "lt": lambda a, b: _order(a, b) < 0,
    "le": lambda a, b: _order(a, b) <= 0,
    "gt": lambda a, b: _order(a, b) > 0,
    "ge": lambda a, b: _order(a, b) >= 0,
    "html": _html,
    "js": _js,
    "urlquery": _urlquery,
    # Sprig: strings
    "trim": lambda s: strval(s).strip(),
    "trimAll": lambda c, s: strval(s).strip(strval(c)),
    "trimPrefix": lambda p, s: strval(s).removeprefix(strval(p)),
    "trimSuffix": lambda p, s: strval(s).removesuffix(strval(p)),
    "upper": lambda s: strval(s).upper(),
    "lower": lambda s: strval(s).lower(),
    "title": lambda s: _title(strval(s)),
    "untitle": lambda s: _untitle(strval(s)),
    "repeat": _repeat,
    "substr": lambda a, b, s: _substr(a, b, strval(s)),
    "nospace": lambda s: re.sub(r"\s", "", strval(s)),
    "trunc": lambda n, s: _trunc(n, strval(s)),
    "abbrev": lambda n, s: _abbrev(n, strval(s)),
    "initials": lambda s: _initials(strval(s)),
    "wrap": lambda n, s: _wrap(n, strval(s)),
    "contains": lambda sub, s: strval(sub) in strval(s),
    "hasPrefix": lambda p, s: strval(s).startswith(strval(p)),
    "hasSuffix": lambda p, s: strval(s).endswith(strval(p)),
    "quote": _quote,
    "squote": _squote,
    "cat": _cat,
    "indent": lambda n, s: _indent(n, strval(s)),
    "nindent": lambda n, s: "\n" + _indent(n, strval(s)),
    "replace": lambda old, new, s: strval(s).replace(strval(old), strval(new)),
    "plural": _plural,
    "snakecase": lambda s: _snake(strval(s)),
    "camelcase": lambda s: _camel(strval(s)),
    "kebabcase": lambda s: _kebab(strval(s)),
    "swapcase": lambda s: _swapcase(strval(s)),
    "toString": strval,
    "toStrings": _strslice,
    "split": lambda sep, s: _split(strval(sep), strval(s)),
    "splitn": lambda sep, n, s: _splitn(strval(sep), n, strval(s)),
    "splitList": lambda sep, s: _split_list(strval(sep), strval(s)),
    "join": lambda sep, v: strval(sep).join(_strslice(v)),
    "sortAlpha": lambda v: sorted(_strslice(v)),
    "regexMatch": _regex_func("match"),
    "mustRegexMatch": _regex_func("match"),
    "regexFind": _regex_func("find"),
    "mustRegexFind": _regex_func("find"),
    "regexFindAll": lambda p, s, n: _regex_find_all(p, strval(s), to_int(n)),
    "mustRegexFindAll": lambda p, s, n: _regex_find_all(p, strval(s), to_int(n)),
    "regexReplaceAll": _regex_func("replace"),
    "mustRegexReplaceAll": _regex_func("replace"),
    "regexReplaceAllLiteral": _regex_func("literal"),
    "mustRegexReplaceAllLiteral": _regex_func("literal"),
    "regexSplit": lambda p, s, n: _regex_split(p, strval(s), to_int(n)),
    "mustRegexSplit": lambda p, s, n: _regex_split(p, strval(s), to_int(n)),
    "regexQuoteMeta": lambda s: re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", strval(s)),
    # Sprig: conversions and defaults
    "atoi": _atoi,
    "int": to_int,
    "int64": to_int,
    "float64": to_float,
    "toDecimal": lambda v: int(strval(v), 8) if re.fullmatch(r"[0-7]+", strval(v)) else 0,
    "default": _default,
    "empty": empty,
    "coalesce": _coalesce,
    "ternary": lambda vt, vf, cond: vt if truth(cond) else vf,
    "fail": _fail_func,
    "kindOf": _kind_of,
    "kindIs": lambda k, v: _kind_of(v) == k,
    "typeOf": go_type,
    "typeIs": lambda t, v: go_type(v) == t,
    "toJson": _to_json,
    "mustToJson": _to_json,
    "toRawJson": _to_json,
    "mustToRawJson": _to_json,
    "toPrettyJson": lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    "mustToPrettyJson": lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    # Sprig: math
    "add": lambda *a: sum(to_int(x) for x in a),
    "add1": lambda a: to_int(a) + 1,
    "sub": lambda a, b: to_int(a) - to_int(b),
    "mul": lambda a, *r: __import__("math").prod([to_int(a)] + [to_int(x) for x in r]),
    "div": lambda a, b: _go_div(to_int(a), to_int(b)),
    "mod": lambda a, b: _go_mod(to_int(a), to_int(b)),
    "max": _max,
    "min": _min,
    "biggest": _max,
    "floor": lambda a: float(__import__("math").floor(to_float(a))),
    "ceil": lambda a: float(__import__("math").ceil(to_float(a))),
    "round": _round,
    "until": _until,
    "untilStep": _until_step,
    "seq": _seq,
    # Sprig: lists
    "list": lambda *a: list(a),
    "tuple": lambda *a: list(a),
    "first": _list_op("first"),
    "mustFirst": _list_op("first"),
    "last": _list_op("last"),
    "mustLast": _list_op("last"),
    "rest": _list_op("rest"),
    "mustRest": _list_op("rest"),
    "initial": _list_op("initial"),
    "mustInitial": _list_op("initial"),
    "reverse": _list_op("reverse"),
    "mustReverse": _list_op("reverse"),
    "compact": _list_op("compact"),
    "mustCompact": _list_op("compact"),
    "uniq": _uniq,
    "mustUniq": _uniq,
    "without": _without,
    "mustWithout": _without,
    "has": _has,
    "mustHas": _has,
    "append": lambda lst, v: _to_list(lst) + [v],
    "push": lambda lst, v: _to_list(lst) + [v],
    "mustAppend": lambda lst, v: _to_list(lst) + [v],
    "mustPush": lambda lst, v: _to_list(lst) + [v],
    "prepend": lambda lst, v: [v] + _to_list(lst),
    "mustPrepend": lambda lst, v: [v] + _to_list(lst),
    "concat": lambda *ls: [x for lst in ls for x in _to_list(lst)],
    # Sprig: dicts
    "dict": _dict,
    "get": _get,
    "set": _set,
    "unset": _unset,
    "hasKey": lambda d, k: k in d,
    "keys": _keys,
    "values": _values,
    "pluck": lambda key, *ds: [d[key] for d in ds if key in d],
    "pick": _pick,
    "omit": _omit,
    # Sprig: encodings and hashes
    "b64enc": lambda s: base64.b64encode(strval(s).encode()).decode(),
    "b64dec": lambda s: _b64dec(strval(s)),
    "b32enc": lambda s: base64.b32encode(strval(s).encode()).decode(),
    "b32dec": lambda s: base64.b32decode(strval(s)).decode("utf-8", "replace"),
    "sha1sum": lambda s: hashlib.sha1(strval(s).encode()).hexdigest(),
    "sha256sum": lambda s: hashlib.sha256(strval(s).encode()).hexdigest(),
    "sha512sum": lambda s: hashlib.sha512(strval(s).encode()).hexdigest(),
    "adler32sum": lambda s: str(zlib.adler32(strval(s).encode())),
    # Sprig: paths
    "base": lambda s: posixpath.basename(strval(s).rstrip("/")) or ("/" if s else "."),
    "dir": lambda s: posixpath.dirname(strval(s)) or ".",
    "ext": lambda s: posixpath.splitext(strval(s))[1],
    "clean": lambda s: posixpath.normpath(strval(s)) if s else ".",
    "isAbs": lambda s: strval(s).startswith("/"),
}

assert not (set(FUNCS) & REMOVED_FUNCS)
# go_print is re-exported for tests that compare printing.
__all__ = ["FUNCS", "REMOVED_FUNCS", "UNSUPPORTED_SPRIG", "go_print", "go_sprintf", "strval"]

# The rest of Sprig (semver, dates, URLs, merges, random ...) lives in its own module.
from nfd.rules.sprig_more import SPRIG_MORE  # noqa: E402

FUNCS.update(SPRIG_MORE)
assert not (set(SPRIG_MORE) & UNSUPPORTED_SPRIG)
