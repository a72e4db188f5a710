"""Sprig's conversions, defaults, type tests, JSON and integer math."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from nfd.rules.errors import TemplateError
from nfd.rules.expression import parse_int
from nfd.rules.template.funcs.common import check_count, empty, strval, to_float, to_int
from nfd.rules.template.values import go_type, truth


def _go_div(a: int, b: int) -> int:
    if b == 0:
        raise TemplateError("integer divide by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _go_mod(a: int, b: int) -> int:
    if b == 0:
        raise TemplateError("integer divide by zero")
    return a - b * _go_div(a, b)


def _default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


def _coalesce(*vals: Any) -> Any:
    for v in vals:
        if not empty(v):
            return v
    return None


def _until(n: Any) -> list[int]:
    count = to_int(n)
    check_count(abs(count), "until")
    return list(range(count)) if count >= 0 else list(range(0, count, -1))


def _until_step(start: Any, stop: Any, step: Any) -> list[int]:
    a, b, s = to_int(start), to_int(stop), to_int(step)
    if s == 0 or (s > 0 and a >= b) or (s < 0 and a <= b):
        return []
    check_count(len(range(a, b, s)), "untilStep")
    return list(range(a, b, s))


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
    check_count(len(range(start, end + (1 if step > 0 else -1), step)), "seq")
    out = []
    i = start
    while (step > 0 and i <= end) or (step < 0 and i >= end):
        out.append(str(i))
        i += step
    return " ".join(out)


def _to_json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def _kind_of(v: Any) -> str:
    k = go_type(v)
    return {"[]interface {}": "slice", "map[string]interface {}": "map", "<nil>": "invalid"}.get(
        k, k
    )


def _fail_func(msg: str) -> Any:
    raise TemplateError(msg)


def _max(a: Any, *rest: Any) -> int:
    return max([to_int(a)] + [to_int(x) for x in rest])


def _min(a: Any, *rest: Any) -> int:
    return min([to_int(a)] + [to_int(x) for x in rest])


def _round(a: Any, p: Any, r_opt: Any = 0.5) -> float:

    value = to_float(a)
    pow10 = 10 ** to_int(p)
    digit = pow10 * value
    _, div = divmod(digit, 1)
    rounded = math.ceil(digit) if div >= to_float(r_opt) else math.floor(digit)
    return rounded / pow10


def _atoi(s: Any) -> int:

    return parse_int(strval(s)) or 0


def _type_is_like(target: Any, value: Any) -> bool:
    t = go_type(value)
    return target == t or "*" + strval(target) == t


CONVERSIONS: dict[str, Callable[..., Any]] = {
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
    "typeIsLike": _type_is_like,
    "toJson": _to_json,
    "mustToJson": _to_json,
    "toRawJson": _to_json,
    "mustToRawJson": _to_json,
    "toPrettyJson": lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    "mustToPrettyJson": lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str),
    "add": lambda *a: sum(to_int(x) for x in a),
    "add1": lambda a: to_int(a) + 1,
    "sub": lambda a, b: to_int(a) - to_int(b),
    "mul": lambda a, *r: math.prod([to_int(a)] + [to_int(x) for x in r]),
    "div": lambda a, b: _go_div(to_int(a), to_int(b)),
    "mod": lambda a, b: _go_mod(to_int(a), to_int(b)),
    "max": _max,
    "min": _min,
    "biggest": _max,
    "floor": lambda a: float(math.floor(to_float(a))),
    "ceil": lambda a: float(math.ceil(to_float(a))),
    "round": _round,
    "until": _until,
    "untilStep": _until_step,
    "seq": _seq,
}
