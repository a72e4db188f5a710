"""Match expressions: the 13 operators and ``type: version``, as upstream evaluates them.

Upstream checks an expression's operands only when it meets a value: a ``Gt``
with two operands is an error against a present attribute, but simply false
against a missing one or a flag. We keep that exactly; ``validate`` reports
such expressions up front.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from nfd.regex import RegexError, compile_re2
from nfd.rules.budget import Meter
from nfd.rules.errors import ExpressionError

OPS = (
    "In",
    "NotIn",
    "InRegexp",
    "Exists",
    "DoesNotExist",
    "Gt",
    "Ge",
    "Lt",
    "Le",
    "GtLt",
    "GeLe",
    "IsTrue",
    "IsFalse",
)
# The empty op is upstream's "MatchAny": always true.
MATCH_ANY = ""
VALUE_TYPES = ("", "version")

_NO_VALUE_OPS = ("", "Exists", "DoesNotExist", "IsTrue", "IsFalse")
_LIST_OPS = ("In", "NotIn", "InRegexp")
_ONE_VALUE_OPS = ("Gt", "Ge", "Lt", "Le")
_RANGE_OPS = ("GtLt", "GeLe")

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def go_list(values: Iterable[str]) -> str:
    """Go's %v of a []string, used in messages so they read like upstream's."""
    return "[" + " ".join(values) + "]"


_INT_RE = re.compile(r"[+-]?[0-9]+")
# Go's fmt.Sscanf("%d.%d.%d"): as many dot-separated numbers as parse, at most three.
_VERSION_RE = re.compile(r"([+-]?[0-9]+)(?:\.([+-]?[0-9]+))?(?:\.([+-]?[0-9]+))?")


def parse_int(text: str) -> int | None:
    """Go's strconv.Atoi: optional sign, ASCII decimal digits, int64 range."""
    if _INT_RE.fullmatch(text) is None:
        return None
    number = int(text)
    if number < _INT64_MIN or number > _INT64_MAX:
        return None
    return number


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``%d``, ``%d.%d`` or ``%d.%d.%d``; anything after is dropped.

    Go's fmt.Sscanf("%d.%d.%d"): leading (Unicode) whitespace skipped, then as
    many dot-separated numbers as parse; the rest (a pre-release such as
    "-45-generic", or a dot not followed by a number) is ignored.
    """
    m = _VERSION_RE.match(text.lstrip())
    if m is None:
        return None
    major, minor, patch = (int(g) if g is not None else 0 for g in m.groups())
    return (major, minor, patch)


# (pattern, text) -> whether it matched: the same names meet the same patterns every run.
@lru_cache(maxsize=1 << 16)
def _regex_matches(pattern: str, text: str) -> bool:
    """Unanchored RE2 search, memoised."""
    return compile_re2(pattern).search(text) is not None


@dataclass(frozen=True, slots=True)
class MatchExpression:
    """One expression: ``op``, its ``value`` operands and the value ``type``.

    Immutable and hashable, compared on ``op``, ``value`` and ``type``.
    """

    op: str
    value: tuple[str, ...] = ()
    type: str = ""
    # The compiled InRegexp patterns, filled on first use.
    _regexps: list[Any] | None = field(default=None, init=False, compare=False, repr=False)
    # Budget steps one evaluation costs: one per pattern for InRegexp, else one.
    cost: int = field(default=1, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op == "InRegexp" and self.value:
            object.__setattr__(self, "cost", len(self.value))

    def __str__(self) -> str:
        op = self.op or '""'
        text = f"{{op: {op}"
        if self.value:
            text += f", value: {go_list(self.value)}"
        if self.type:
            text += f", type: {self.type}"
        return text + "}"

    # -- evaluation ---------------------------------------------------------

    def evaluate(self, valid: bool, value: str | None) -> bool:
        """Upstream's evaluateMatchExpression; ``value`` None means a flag."""
        op = self.op
        if op not in OPS and op != MATCH_ANY:
            raise ExpressionError(f"invalid Op {op!r}")
        if op in ("", "Exists", "DoesNotExist"):
            self._check_empty()
            if op == "":
                return True
            return valid if op == "Exists" else not valid
        if not valid or value is None:
            return False
        if op == "In":
            self._check_non_empty()
            return value in self.value
        if op == "NotIn":
            self._check_non_empty()
            return value not in self.value
        if op == "InRegexp":
            self._check_non_empty()
            self._compiled()  # raises on a bad pattern, as upstream
            return any(_regex_matches(p, value) for p in self.value)
        if op in _ONE_VALUE_OPS:
            if len(self.value) != 1:
                raise ExpressionError(
                    "invalid expression, 'value' field must contain exactly one element "
                    f"for Op {op!r} (have {go_list(self.value)})"
                )
            left = self._operand(value, input_value=True)
            right = self._operand(self.value[0], input_value=False)
            if op == "Gt":
                return left > right
            if op == "Ge":
                return left >= right
            if op == "Lt":
                return left < right
            return left <= right
        if op in _RANGE_OPS:
            if len(self.value) != 2:
                raise ExpressionError(
                    "invalid expression, 'value' field must contain exactly two elements "
                    f"for Op {op!r} (have {go_list(self.value)})"
                )
            v = self._operand(value, input_value=True)
            lo = self._operand(self.value[0], input_value=False)
            hi = self._operand(self.value[1], input_value=False)
            if lo >= hi:
                raise ExpressionError(
                    "invalid expression, value[0] must be less than value[1] "
                    f"for Op {op!r} (have {go_list(self.value)})"
                )
            return lo < v < hi if op == "GtLt" else lo <= v <= hi
        # IsTrue / IsFalse
        self._check_empty()
        return value == ("true" if op == "IsTrue" else "false")

    def _check_empty(self) -> None:
        if self.value:
            raise ExpressionError(
                f"invalid expression, 'value' field must be empty for Op {self.op!r} "
                f"(have {go_list(self.value)})"
            )

    def _check_non_empty(self) -> None:
        if not self.value:
            raise ExpressionError(
                f"invalid expression, 'value' field must be non-empty for Op {self.op!r}"
            )

    def _compiled(self) -> list[Any]:
        if self._regexps is not None:
            return self._regexps
        try:
            compiled = [compile_re2(v) for v in self.value]
        except RegexError as err:
            raise ExpressionError(
                f"invalid expression, 'value' field must only contain valid regexps "
                f"for Op {self.op!r}: {err}"
            ) from None
        # A cache on a frozen instance: not part of its value (compare=False).
        object.__setattr__(self, "_regexps", compiled)
        return compiled

    def _operand(self, text: str, input_value: bool) -> Any:
        where = "" if input_value else f" in {self}"
        if self.type == "version":
            version = parse_version(text)
            if version is None:
                raise ExpressionError(f"not a version {text!r}{where}")
            return version
        number = parse_int(text)
        if number is None:
            raise ExpressionError(f"not a number {text!r}{where}")
        return number

    # -- static checks (for validate) -----------------------------------------

    def problems(self) -> list[str]:
        """Everything evaluation would reject, found without any input."""
        op = self.op
        if op not in OPS and op != MATCH_ANY:
            return [f"invalid op {op!r} (expected one of {', '.join(OPS)})"]
        out: list[str] = []
        if self.type not in VALUE_TYPES:
            out.append(f"invalid type {self.type!r} (only 'version' is known)")
        if self.type == "version" and op not in _ONE_VALUE_OPS + _RANGE_OPS:
            out.append(f"type 'version' has no effect with op {op!r}")
        if op in _NO_VALUE_OPS and self.value:
            out.append(f"op {op!r} takes no values (have {go_list(self.value)})")
        elif op in _LIST_OPS and not self.value:
            out.append(f"op {op!r} needs at least one value")
        elif op in _ONE_VALUE_OPS and len(self.value) != 1:
            out.append(f"op {op!r} needs exactly one value (have {go_list(self.value)})")
        elif op in _RANGE_OPS and len(self.value) != 2:
            out.append(f"op {op!r} needs exactly two values (have {go_list(self.value)})")
        if op == "InRegexp":
            for v in self.value:
                try:
                    compile_re2(v)
                except RegexError as err:
                    out.append(str(err))
        if op in _ONE_VALUE_OPS + _RANGE_OPS and not out:
            try:
                bounds = [self._operand(v, input_value=False) for v in self.value]
            except ExpressionError as err:
                out.append(str(err))
            else:
                if op in _RANGE_OPS and bounds[0] >= bounds[1]:
                    out.append(f"op {op!r}: value[0] must be less than value[1]")
        return out


# -- matching a set of expressions against one feature ----------------------
# Each evaluation charges the rule's meter (``cost`` steps), so a rule of many expressions
# against many instances ends within its budget.

Element = dict[str, str]


def match_instances(
    exprs: Mapping[str, MatchExpression],
    instances: list[dict[str, str]] | None,
    meter: Meter | None = None,
) -> tuple[bool, list[Element]]:
    """Instances that satisfy every expression on their own."""
    if not instances:
        return False, []
    meter = Meter() if meter is None else meter
    # Charged per instance, for all of its expressions (an upper bound: it fails fast).
    per_instance = sum([expr.cost for expr in exprs.values()])
    matched: list[Element] = []
    for inst in instances:
        meter.charge(per_instance)
        ok = True
        for name, expr in exprs.items():
            present = name in inst
            if not expr.evaluate(present, inst[name] if present else None):
                ok = False
                break
        if ok:
            matched.append(inst)
    return bool(matched), matched


def match_multi(
    exprs: Mapping[str, MatchExpression],
    flags: set[str] | None,
    attrs: dict[str, str] | None,
    instances: list[dict[str, str]] | None,
    meter: Meter | None = None,
) -> tuple[bool, list[Element]]:
    """Upstream's MatchMulti: flags and attributes as a union, instances apart."""
    meter = Meter() if meter is None else meter
    matched: list[Element] = []
    is_match = flags is not None or attrs is not None
    # Charged once for the term (at most MAX_EXPRESSIONS_PER_TERM): cheaper than per expression.
    cost = 0
    for name, expr in exprs.items():
        cost += expr.cost
        match_k = match_v = False
        if flags is not None:
            match_k = expr.evaluate(name in flags, None)
            if match_k:
                matched.append({"Name": name})
            elif expr.op == "DoesNotExist":
                is_match, matched = False, []
                break
        if attrs is not None:
            present = name in attrs
            match_v = expr.evaluate(present, attrs[name] if present else None)
            if match_v:
                matched.append({"Name": name, "Value": attrs[name] if present else ""})
            elif expr.op == "DoesNotExist":
                is_match, matched = False, []
                break
        if not match_k and not match_v:
            is_match, matched = False, []
            break
    meter.charge(cost)
    matched.sort(key=lambda e: e["Name"])
    inst_match, inst_elems = match_instances(exprs, instances, meter)
    return is_match or inst_match, matched + inst_elems


def match_names_multi(
    expr: MatchExpression,
    flags: set[str] | None,
    attrs: dict[str, str] | None,
    instances: list[dict[str, str]] | None,
    meter: Meter | None = None,
) -> tuple[bool, list[Element]]:
    """``matchName``: the expression against element names of every kind."""
    meter = Meter() if meter is None else meter
    cost = expr.cost
    matched: list[Element] = []
    # Every name is evaluated: charged up front, once per kind.
    meter.charge(cost * len(flags or ()))
    for name in flags or ():
        if expr.evaluate(True, name):
            matched.append({"Name": name})
    meter.charge(cost * len(attrs or ()))
    for name, value in (attrs or {}).items():
        if expr.evaluate(True, name):
            matched.append({"Name": name, "Value": value})
    matched.sort(key=lambda e: e["Name"])
    for inst in instances or ():
        meter.charge(cost * len(inst))
        # Every name is evaluated (no short cut) so errors show as upstream's.
        if [name for name in inst if expr.evaluate(True, name)]:
            matched.append(inst)
    return bool(matched), matched
