"""Go text/template's builtin functions: and, or, not, len, index, slice, print*, comparisons,
html, js and urlquery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.fmt import go_sprintf, sprint, sprintln
from nfd.rules.template.values import go_type, truth

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
        raise TemplateError("missing argument for comparison")
    for b in others:
        if a is None or b is None:
            if a is None and b is None:
                return True
            continue
        ka, kb = _kind(a), _kind(b)
        if ka == "other" or kb == "other":
            raise TemplateError("non-comparable type")
        if ka != kb:
            raise TemplateError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _order(a: Any, b: Any) -> int:
    ka, kb = _kind(a), _kind(b)
    if ka not in ("int", "float", "string") or kb not in ("int", "float", "string"):
        raise TemplateError("invalid type for comparison")
    if ka != kb:
        raise TemplateError("incompatible types for comparison")
    return (a > b) - (a < b)


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8"))
    if isinstance(v, list | tuple | Mapping):
        return len(v)
    raise TemplateError(f"len of type {go_type(v)}")


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
                raise TemplateError(f"cannot index slice/array with type {go_type(key)}")
            if key < 0 or key >= len(item):
                raise TemplateError(f"index out of range: {key}")
            item = item[key] if not isinstance(item, str) else item.encode()[key]
        elif item is None:
            raise TemplateError("index of untyped nil")
        else:
            raise TemplateError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, list | tuple | str):
        raise TemplateError(f"can't slice item of type {go_type(item)}")
    if len(idx) > 3:
        raise TemplateError("too many slice indexes")
    bounds = [int(i) for i in idx]
    start = bounds[0] if bounds else 0
    end = bounds[1] if len(bounds) > 1 else len(item)
    if not 0 <= start <= end <= len(item):
        raise TemplateError(f"slice index out of range: {start}:{end}")
    return item[start:end]


def _html(*args: Any) -> str:
    s = sprint(*args)
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
        .replace("\x00", "\ufffd")
    )


def _js(*args: Any) -> str:
    s = sprint(*args)
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
    return quote_plus(sprint(*args), safe="")


def _not(v: Any) -> bool:
    return not truth(v)


BUILTINS: dict[str, Callable[..., Any]] = {
    "and": lambda *a: a[-1],
    "or": lambda *a: a[-1],
    "not": _not,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": sprint,
    "printf": go_sprintf,
    "println": sprintln,
    "eq": _eq,
    "ne": _ne,
    "lt": lambda a, b: _order(a, b) < 0,
    "le": lambda a, b: _order(a, b) <= 0,
    "gt": lambda a, b: _order(a, b) > 0,
    "ge": lambda a, b: _order(a, b) >= 0,
    "html": _html,
    "js": _js,
    "urlquery": _urlquery,
}
