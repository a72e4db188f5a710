"""Sprig's string functions and regular expressions (RE2, as Go's regexp)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any

from nfd.regex import RegexError, compile_re2
from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.common import check_size, strslice, strval, to_int
from nfd.rules.template.funcs.fmt import go_quote


def _repeat(n: Any, s: Any) -> str:
    count, text = max(to_int(n), 0), strval(s)
    check_size(count * len(text), "repeat")
    return text * count


def _regex(pattern: str) -> Any:
    try:
        return compile_re2(pattern)
    except RegexError as err:
        raise TemplateError(str(err)) from None


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
    check_size(max(to_int(spaces), 0) * (s.count("\n") + 1) + len(s), "indent")
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


def _initials(s: str) -> str:
    return "".join(w[0] for w in s.split() if w)


def _swapcase(s: str) -> str:
    return s.swapcase()


def _wrap(width: Any, s: str) -> str:

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


STRINGS: dict[str, Callable[..., Any]] = {
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
    "toStrings": strslice,
    "split": lambda sep, s: _split(strval(sep), strval(s)),
    "splitn": lambda sep, n, s: _splitn(strval(sep), n, strval(s)),
    "splitList": lambda sep, s: _split_list(strval(sep), strval(s)),
    "join": lambda sep, v: strval(sep).join(strslice(v)),
    "sortAlpha": lambda v: sorted(strslice(v)),
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
}
