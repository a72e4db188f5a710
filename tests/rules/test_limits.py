"""Input size limits: oversized rule input is a quick RuleError that names the limit."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nfd import rules as nfd_rules
from nfd.rules import (
    MAX_EXPRESSION_VALUES,
    MAX_EXPRESSIONS_PER_RULE,
    MAX_EXPRESSIONS_PER_TERM,
    MAX_MATCH_ANY,
    MAX_NAME_LENGTH,
    MAX_RULE_TEXT_BYTES,
    MAX_RULES,
    MAX_TEMPLATE_BYTES,
    MAX_TERMS_PER_RULE,
    RuleError,
    load_rules,
    validate_rules,
)


def rule(**fields: Any) -> dict[str, Any]:
    return {"name": "r", "labels": {"a": "b"}, **fields}


def term(exprs: dict[str, Any] | list[str], feature: str = "local.label") -> dict[str, Any]:
    return {"feature": feature, "matchExpressions": exprs}


def exists(count: int) -> dict[str, Any]:
    return {f"k{i}": {"op": "Exists"} for i in range(count)}


def test_every_limit_is_exported() -> None:
    for name in (
        "MAX_RULE_TEXT_BYTES",
        "MAX_RULES",
        "MAX_TERMS_PER_RULE",
        "MAX_MATCH_ANY",
        "MAX_EXPRESSIONS_PER_TERM",
        "MAX_EXPRESSIONS_PER_RULE",
        "MAX_EXPRESSION_VALUES",
        "MAX_TEMPLATE_BYTES",
        "MAX_NAME_LENGTH",
    ):
        assert name in nfd_rules.__all__
        assert isinstance(getattr(nfd_rules, name), int)


def test_text_over_the_limit_is_refused_before_parsing() -> None:
    # 54 MB of 420,000 rules: refused without parsing (today 150 s and 2.2 GB).
    one = "- {name: r, labels: {a: b}, matchFeatures: [{feature: a.b}]}\n"
    text = "rules:\n" + one * 420_000
    assert len(text) > 25_000_000
    for data in (text, text.encode()):
        began = time.monotonic()
        with pytest.raises(RuleError, match="MAX_RULE_TEXT_BYTES") as caught:
            load_rules(data, "big.yaml")
        assert time.monotonic() - began < 1.0  # the stated bound
        assert f"over the {MAX_RULE_TEXT_BYTES}-byte limit" in str(caught.value)
        assert str(caught.value).startswith("big.yaml: ")
    # Multi-byte characters count as bytes.
    with pytest.raises(RuleError, match="MAX_RULE_TEXT_BYTES"):
        load_rules("#" + "é" * (MAX_RULE_TEXT_BYTES // 2 + 1), "wide.yaml")
    assert len(validate_rules(text, "big.yaml")) == 1


def test_text_at_the_limit_still_loads() -> None:
    text = "rules: [{name: r, labels: {a: b}}]\n"
    text += "#" * (MAX_RULE_TEXT_BYTES - len(text) - 1) + "\n"
    assert len(text) == MAX_RULE_TEXT_BYTES
    assert [r.name for r in load_rules(text, "edge.yaml")] == ["r"]


def test_too_many_rules() -> None:
    with pytest.raises(RuleError, match="MAX_RULES"):
        load_rules({"rules": [rule()] * (MAX_RULES + 1)}, "many")
    with pytest.raises(RuleError, match="MAX_RULES"):
        load_rules([rule()] * (MAX_RULES + 1), "many")
    # Several objects: counted together.
    obj = {"kind": "NodeFeatureRule", "spec": {"rules": [rule()] * (MAX_RULES // 2 + 1)}}
    with pytest.raises(RuleError, match="MAX_RULES"):
        load_rules([dict(obj, metadata={"name": "a"}), dict(obj, metadata={"name": "b"})], "two")
    assert len(load_rules({"rules": [rule()] * MAX_RULES}, "max")) == MAX_RULES


def test_100000_match_expressions_are_refused_quickly() -> None:
    cases = {
        "one term": rule(matchFeatures=[term(exists(100_000))]),
        "many terms": rule(matchFeatures=[term(exists(1000))] * 100),
        "in matchAny": rule(matchAny=[{"matchFeatures": [term(exists(1000))]}] * 100),
    }
    for name, raw in cases.items():
        began = time.monotonic()
        with pytest.raises(RuleError, match="MAX_EXPRESSIONS_PER_") as caught:
            load_rules({"rules": [raw]}, name)
        assert time.monotonic() - began < 1.0, name  # the stated bound (today 15 s)
        assert "rule 'r'" in str(caught.value)


def test_per_term_and_per_rule_expression_limits() -> None:
    with pytest.raises(RuleError, match="MAX_EXPRESSIONS_PER_TERM"):
        load_rules(rule(matchFeatures=[term(exists(MAX_EXPRESSIONS_PER_TERM + 1))]), "o")
    worker_list = [f"k{i}" for i in range(MAX_EXPRESSIONS_PER_TERM + 1)]
    with pytest.raises(RuleError, match="MAX_EXPRESSIONS_PER_TERM"):
        load_rules(rule(matchFeatures=[term(worker_list)]), "o", worker=True)
    per_term = MAX_EXPRESSIONS_PER_TERM
    terms = [term(exists(per_term))] * (MAX_EXPRESSIONS_PER_RULE // per_term)
    assert len(load_rules(rule(matchFeatures=terms), "o")) == 1
    with pytest.raises(RuleError, match="MAX_EXPRESSIONS_PER_RULE"):
        load_rules(rule(matchFeatures=[*terms, term(exists(1))]), "o")


def test_term_and_match_any_limits() -> None:
    with pytest.raises(RuleError, match="MAX_TERMS_PER_RULE"):
        load_rules(rule(matchFeatures=[term(exists(1))] * (MAX_TERMS_PER_RULE + 1)), "o")
    with pytest.raises(RuleError, match="MAX_MATCH_ANY"):
        load_rules(rule(matchAny=[{"matchFeatures": []}] * (MAX_MATCH_ANY + 1)), "o")
    # matchFeatures and matchAny share the rule's term limit.
    half = MAX_TERMS_PER_RULE // 2
    raw = rule(
        matchFeatures=[term(exists(1))] * half,
        matchAny=[{"matchFeatures": [term(exists(1))] * (half + 1)}],
    )
    with pytest.raises(RuleError, match="MAX_TERMS_PER_RULE"):
        load_rules(raw, "o")
    legacy = {"name": "l", "matchOn": [{"cpuId": ["AVX"]}] * (MAX_MATCH_ANY + 1)}
    with pytest.raises(RuleError, match="MAX_MATCH_ANY"):
        load_rules([legacy], "o", worker=True)


def test_value_template_and_name_limits() -> None:
    values = [str(i) for i in range(MAX_EXPRESSION_VALUES + 1)]
    with pytest.raises(RuleError, match="MAX_EXPRESSION_VALUES"):
        load_rules(rule(matchFeatures=[term({"x": {"op": "In", "value": values}})]), "o")
    with pytest.raises(RuleError, match="MAX_EXPRESSION_VALUES"):
        load_rules(rule(matchFeatures=[term({"x": values})]), "o", worker=True)
    with pytest.raises(RuleError, match=f"template larger than {MAX_TEMPLATE_BYTES} bytes"):
        load_rules(rule(labelsTemplate="x" * (MAX_TEMPLATE_BYTES + 1)), "o")
    long = "n" * (MAX_NAME_LENGTH + 1)
    for raw in (
        {"name": long},
        rule(matchFeatures=[term(exists(1), feature=long)]),
        rule(matchFeatures=[term({long: {"op": "Exists"}})]),
    ):
        with pytest.raises(RuleError, match="MAX_NAME_LENGTH"):
            load_rules(raw, "o")
    with pytest.raises(RuleError, match="MAX_NAME_LENGTH"):
        load_rules([{"name": long, "matchOn": []}], "o", worker=True)
    ok = "n" * MAX_NAME_LENGTH
    assert load_rules(rule(name=ok, matchFeatures=[term({ok: {"op": "Exists"}}, ok)]), "o")
