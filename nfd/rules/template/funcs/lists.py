"""Sprig's list and dict functions (merges as mergo, deep copies as copystructure)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from nfd.rules.errors import TemplateError
from nfd.rules.template.funcs.common import empty, strval, to_int, to_list
from nfd.rules.template.values import go_type


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
    for x in to_list(v):
        if x not in out:
            out.append(x)
    return out


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


def _without(lst: Any, *omit: Any) -> list[Any]:
    return [x for x in to_list(lst) if x not in omit]


def _has(needle: Any, haystack: Any) -> bool:
    return haystack is not None and needle in to_list(haystack)


def _list_op(name: str) -> Callable[..., Any]:
    def first(v: Any) -> Any:
        lst = to_list(v)
        return lst[0] if lst else None

    def last(v: Any) -> Any:
        lst = to_list(v)
        return lst[-1] if lst else None

    ops: dict[str, Callable[..., Any]] = {
        "first": first,
        "last": last,
        "rest": lambda v: to_list(v)[1:],
        "initial": lambda v: to_list(v)[:-1],
        "reverse": lambda v: list(reversed(to_list(v))),
        "compact": lambda v: [x for x in to_list(v) if not empty(x)],
    }
    return ops[name]


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
        if not isinstance(d, Mapping) or strval(key) not in d:
            return default
        d = d[strval(key)]
        if i == len(keys) - 1:
            return d
    return default


def _chunk(size: Any, lst: Any) -> list[list[Any]]:

    n = to_int(size)
    if not isinstance(lst, list | tuple):
        raise TemplateError(f"Cannot chunk type {go_type(lst)}")
    if n < 1:
        raise TemplateError("chunk size must be at least 1")  # Go divides by zero here
    return [list(lst[i : i + n]) for i in range(0, len(lst), n)]


LISTS: dict[str, Callable[..., Any]] = {
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
    "append": lambda lst, v: to_list(lst) + [v],
    "push": lambda lst, v: to_list(lst) + [v],
    "mustAppend": lambda lst, v: to_list(lst) + [v],
    "mustPush": lambda lst, v: to_list(lst) + [v],
    "prepend": lambda lst, v: [v] + to_list(lst),
    "mustPrepend": lambda lst, v: [v] + to_list(lst),
    "concat": lambda *ls: [x for lst in ls for x in to_list(lst)],
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
    "deepCopy": copy.deepcopy,
    "mustDeepCopy": copy.deepcopy,
    "merge": _merge(False),
    "mustMerge": _merge(False),
    "mergeOverwrite": _merge(True),
    "mustMergeOverwrite": _merge(True),
    "dig": _dig,
    "chunk": _chunk,
    "mustChunk": _chunk,
}
