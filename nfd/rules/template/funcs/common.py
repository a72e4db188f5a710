"""Helpers every function family shares: Sprig's conversions and the size caps."""

from __future__ import annotations

import re
from typing import Any

from nfd.rules.errors import TemplateError
from nfd.rules.template.values import go_sprint_value, go_type, truth

# Template output cap: a template that loops to produce megabytes is an error.
MAX_OUTPUT = 1 << 20


# What one function call may build. A template asking for more gets an error instead of
# costing nfd-master or nfd-worker all its memory (Go's fmt caps widths at 1e6 too).
MAX_RESULT = 1 << 20
MAX_LIST = 100_000
MAX_FMT_WIDTH = 1_000_000


def check_size(size: int, what: str) -> None:
    if size > MAX_RESULT:
        raise TemplateError(f"{what}: result of {size} bytes is over the {MAX_RESULT}-byte limit")


def check_count(count: int, what: str) -> None:
    if count > MAX_LIST:
        raise TemplateError(f"{what}: {count} elements is over the {MAX_LIST}-element limit")


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


def empty(v: Any) -> bool:
    return not truth(v)


def to_list(v: Any) -> list[Any]:
    if isinstance(v, list | tuple):
        return list(v)
    if v is None:
        return []
    raise TemplateError(f"cannot find list type from {go_type(v)}")


def strslice(v: Any) -> list[str]:
    if isinstance(v, list | tuple):
        return [strval(x) for x in v if x is not None]
    if v is None:
        return []
    return [strval(v)]
