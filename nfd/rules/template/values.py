"""Go value semantics the templates need: truth, type names and ``fmt``'s ``%v``.

The lowest module of the template engine: the executor and every function family use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A pipeline that produced no value yet (Go's "missing value"), distinct from nil.
MISSING: Any = object()


def sort_key(key: Any) -> Any:
    """Map keys in Go's order: numbers first, then the rest as text."""
    return (0, key) if isinstance(key, int | float) else (1, str(key))


def truth(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty things are false."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str | list | tuple | dict):
        return bool(value)
    if isinstance(value, Mapping):
        return len(value) > 0
    return True


def go_type(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    return type(value).__name__


def go_float(value: float) -> str:
    """Go's %v of a float64: shortest digits, exponent form below 1e-4 or from 1e6."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    mantissa, _, exp_part = text.partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    mantissa = mantissa.lstrip("-")
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exp10 = int(exp_part or 0) + len(int_part)
    if not digits:
        return sign + "0"
    leading_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    exp10 -= leading_zeros
    digits = digits.rstrip("0")
    x = exp10 - 1  # exponent in d.ddd form
    if x < -4 or x >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if exp10 <= 0:
        return f"{sign}0.{'0' * -exp10}{digits}"
    if exp10 >= len(digits):
        return sign + digits + "0" * (exp10 - len(digits))
    return f"{sign}{digits[:exp10]}.{digits[exp10:]}"


def go_print(value: Any) -> str:
    """Go's fmt %v as text/template prints a value."""
    if value is None or value is MISSING:
        return "<no value>"
    return go_sprint_value(value)


def go_sprint_value(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_sprint_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: sort_key(kv[0]))
        return (
            "map[" + " ".join(f"{go_sprint_value(k)}:{go_sprint_value(v)}" for k, v in items) + "]"
        )
    return str(value)
