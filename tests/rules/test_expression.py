"""Every operator on every feature type, matching, not matching and erroring.

Tables follow upstream's expression tests: an expression is checked against
a flag set, an attribute set and instances, with the key present or absent.
"""

from __future__ import annotations

import pytest

from nfd.rules.errors import ExpressionError
from nfd.rules.expression import (
    MatchExpression,
    match_instances,
    match_multi,
    match_names_multi,
    parse_int,
    parse_version,
)


def E(op: str, *values: str, type: str = "") -> MatchExpression:  # noqa: N802
    return MatchExpression(op, tuple(values), type)


# (expression, attribute value or None for absent key, expected)
ATTRIBUTE_CASES = [
    (E(""), None, True),
    (E(""), "x", True),
    (E("In", "1", "2"), "2", True),
    (E("In", "1", "2"), "3", False),
    (E("In", "1", "2"), None, False),
    (E("NotIn", "1", "2"), "3", True),
    (E("NotIn", "1", "2"), "2", False),
    (E("NotIn", "1", "2"), None, False),  # missing key: false, not true
    (E("InRegexp", "^val-[0-9]$"), "val-1", True),
    (E("InRegexp", "^val-[0-9]$"), "val-12", False),
    (E("InRegexp", "val-[0-9]$", "al-[1-9]"), "val-12", True),  # unanchored
    (E("InRegexp", "x"), None, False),
    (E("Exists"), "", True),
    (E("Exists"), None, False),
    (E("DoesNotExist"), "1", False),
    (E("DoesNotExist"), None, True),
    (E("Gt", "2"), "3", True),
    (E("Gt", "2"), "2", False),
    (E("Gt", "-10"), "-3", True),
    (E("Gt", "2"), None, False),
    (E("Ge", "2"), "2", True),
    (E("Ge", "2"), "1", False),
    (E("Lt", "2"), "1", True),
    (E("Lt", "2"), "2", False),
    (E("Le", "2"), "2", True),
    (E("Le", "2"), "3", False),
    (E("GtLt", "1", "10"), "2", True),
    (E("GtLt", "1", "10"), "1", False),
    (E("GtLt", "1", "10"), "10", False),
    (E("GtLt", "-10", "10"), None, False),
    (E("GeLe", "-10", "10"), "10", True),
    (E("GeLe", "-10", "10"), "-10", True),
    (E("GeLe", "-10", "10"), "-11", False),
    (E("IsTrue"), "true", True),
    (E("IsTrue"), "1", False),
    (E("IsTrue"), None, False),
    (E("IsFalse"), "false", True),
    (E("IsFalse"), "true", False),
    # type: version
    (E("Gt", "2.0", type="version"), "2.1", True),
    (E("Gt", "2.0", type="version"), "2.0", False),
    (E("Gt", "2.0.1", type="version"), "2.0.2", True),
    (E("Ge", "2.0.1", type="version"), "2.0.1", True),
    (E("Ge", "2.0.1", type="version"), "2.0.0", False),
    (E("Lt", "2.0", type="version"), "1.9", True),
    (E("Le", "2.0", type="version"), "2.1", False),
    (E("Lt", "10", type="version"), "9", True),  # numeric, not string, order
    (E("GtLt", "1.0.1", "10.0.1", type="version"), "1.0.2", True),
    (E("GtLt", "1.0", "10.0", type="version"), "1.0", False),
    (E("GeLe", "1", "10", type="version"), "10", True),
    (E("GeLe", "1", "10", type="version"), "-11", False),
    (E("Ge", "6.8", type="version"), "6.8.0-45-generic", True),  # pre-release dropped
    (E("Gt", "2", type="version"), None, False),
]


@pytest.mark.parametrize(("expr", "value", "expected"), ATTRIBUTE_CASES, ids=str)
def test_attribute_values(expr: MatchExpression, value: str | None, expected: bool) -> None:
    attrs = {"other": "x"} if value is None else {"foo": value, "other": "x"}
    assert expr.evaluate("foo" in attrs, attrs.get("foo")) is expected
    matched, elements = match_multi({"foo": expr}, None, attrs, None)
    assert matched is expected
    if expected and value is not None and expr.op != "DoesNotExist":
        assert elements == [{"Name": "foo", "Value": value}]


@pytest.mark.parametrize(("expr", "value", "expected"), ATTRIBUTE_CASES, ids=str)
def test_instance_values(expr: MatchExpression, value: str | None, expected: bool) -> None:
    inst = {"name": "i0"} if value is None else {"name": "i0", "foo": value}
    matched, elements = match_instances({"foo": expr}, [inst])
    assert matched is expected
    assert elements == ([inst] if expected else [])
    # Through match_multi as well: an instance-only feature.
    assert match_multi({"foo": expr}, None, None, [inst])[0] is expected


# Flags have no values: only Exists, DoesNotExist and "" can match; others are false, no error.
FLAG_CASES = [
    (E(""), True, True),
    (E("Exists"), True, True),
    (E("Exists"), False, False),
    (E("DoesNotExist"), True, False),
    (E("DoesNotExist"), False, True),
    (E("In", "foo"), True, False),
    (E("NotIn", "foo"), True, False),
    (E("InRegexp", "foo"), True, False),
    (E("Gt", "1"), True, False),
    (E("Ge", "1"), True, False),
    (E("Lt", "1"), True, False),
    (E("Le", "1"), True, False),
    (E("GtLt", "1", "10"), True, False),
    (E("GeLe", "1", "10"), True, False),
    (E("IsTrue"), True, False),
    (E("IsFalse"), True, False),
    # Even malformed operands are not evaluated against a flag.
    (E("Gt", "1", "2"), True, False),
    (E("InRegexp", "("), True, False),
]


@pytest.mark.parametrize(("expr", "present", "expected"), FLAG_CASES, ids=str)
def test_flags(expr: MatchExpression, present: bool, expected: bool) -> None:
    flags = {"foo", "bar"} if present else {"bar"}
    assert expr.evaluate(present, None) is expected
    assert match_multi({"foo": expr}, flags, None, None)[0] is expected


ERROR_CASES = [
    E("", "1"),
    E("In"),
    E("NotIn"),
    E("InRegexp"),
    E("InRegexp", "("),
    E("Exists", "1"),
    E("DoesNotExist", "1"),
    E("Gt"),
    E("Gt", "1", "2"),
    E("Gt", ""),
    E("Ge", "2.0"),  # operand not an integer
    E("Lt", "a"),
    E("Le", "1", "2", "3"),
    E("GtLt"),
    E("GtLt", "1"),
    E("GtLt", "2", "1"),  # bounds reversed
    E("GtLt", "1", "1"),
    E("GtLt", "1", "2", "3"),
    E("GtLt", "a", "2"),
    E("GeLe", "5", "5"),
    E("IsTrue", "1"),
    E("IsFalse", "1", "2"),
    E("Gt", "v2", type="version"),
    E("Bogus", "1"),
]


@pytest.mark.parametrize("expr", ERROR_CASES, ids=str)
def test_errors_against_a_present_value(expr: MatchExpression) -> None:
    with pytest.raises(ExpressionError):
        expr.evaluate(True, "1")
    with pytest.raises(ExpressionError):
        match_multi({"foo": expr}, None, {"foo": "1"}, None)
    with pytest.raises(ExpressionError):
        match_instances({"foo": expr}, [{"foo": "1"}])
    assert expr.problems(), "validate must report it up front"


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        (E("Gt", "2"), "str"),
        (E("Lt", "2"), "1.0"),
        (E("GtLt", "1", "10"), "5.0"),
        (E("Ge", "2", type="version"), "str"),
        (E("GeLe", "-10", "10"), "str"),
    ],
    ids=str,
)
def test_error_on_non_number_input(expr: MatchExpression, value: str) -> None:
    with pytest.raises(ExpressionError, match="not a"):
        expr.evaluate(True, value)
    assert not expr.problems()  # the expression itself is fine


def test_valid_expressions_have_no_problems() -> None:
    for expr, _, _ in ATTRIBUTE_CASES:
        assert expr.problems() == [], expr


def test_multi_type_feature_union_and_does_not_exist() -> None:
    flags = {"A"}
    attrs = {"B": "1"}
    # Each expression may match in the flags or in the attributes.
    assert match_multi({"A": E("Exists"), "B": E("In", "1")}, flags, attrs, None)[0]
    # DoesNotExist must hold in both.
    assert not match_multi({"B": E("DoesNotExist")}, flags, attrs, None)[0]
    assert not match_multi({"A": E("DoesNotExist")}, flags, attrs, None)[0]
    assert match_multi({"C": E("DoesNotExist")}, flags, attrs, None)[0]


def test_instances_need_one_instance_matching_all() -> None:
    insts = [{"a": "1", "b": "2"}, {"a": "2", "b": "1"}]
    assert match_multi({"a": E("In", "1"), "b": E("In", "2")}, None, None, insts)[0]
    assert not match_multi({"a": E("In", "1"), "b": E("In", "1")}, None, None, insts)[0]


def test_empty_expression_set() -> None:
    assert match_multi({}, set(), None, None)[0]  # existing flag set, even empty
    assert match_multi({}, None, {}, None)[0]
    assert not match_multi({}, None, None, [])[0]  # instances need one
    assert match_multi({}, None, None, [{}])[0]


def test_match_name() -> None:
    flags, attrs, insts = {"flag_1", "flag_2"}, {"attr_1": "x"}, [{"attr_2": "y"}, {"z": "1"}]
    ok, elems = match_names_multi(E("In", "flag_2", "attr_1"), flags, attrs, insts)
    assert ok and elems == [{"Name": "attr_1", "Value": "x"}, {"Name": "flag_2"}]
    ok, elems = match_names_multi(E("InRegexp", "^attr"), flags, attrs, insts)
    assert ok and {"attr_2": "y"} in elems
    assert not match_names_multi(E("In", "nope"), flags, attrs, insts)[0]
    assert not match_names_multi(E("DoesNotExist"), flags, attrs, insts)[0]
    with pytest.raises(ExpressionError):  # names are not numbers
        match_names_multi(E("Gt", "1"), flags, attrs, insts)


def test_regex_is_re2_and_linear() -> None:
    # Catastrophic for a backtracking engine; RE2 answers at once.
    expr = E("InRegexp", "^(a+)+$")
    assert not expr.evaluate(True, "a" * 5000 + "!")
    # Lookahead is not RE2 syntax: an error, not a hang.
    with pytest.raises(ExpressionError):
        E("InRegexp", "(?=a)").evaluate(True, "a")


def test_go_integer_parsing() -> None:
    assert parse_int("-12") == -12 and parse_int("+3") == 3
    for bad in ("", " 1", "1 ", "1_000", "0x10", "1.0", "9223372036854775808"):
        assert parse_int(bad) is None, bad
    assert parse_version("1") == (1, 0, 0)
    assert parse_version("5.15.0-91-generic") == (5, 15, 0)
    assert parse_version("str") is None
