"""Every rule's evaluation is bounded: steps and wall time over the whole rule.

Each case is a rule the loader admits (within every size limit) that would run for
minutes or for ever without the budget: it must end with RuleBudgetExceeded naming the
rule and the budget, and the rules after it must still apply.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from nfd.features import Features
from nfd.rules import (
    DEFAULT_BUDGET,
    EvalBudget,
    RuleBudgetExceeded,
    RuleExecutionError,
    TemplateError,
    execute_rule,
    execute_rules,
    load_rules,
)
from nfd.rules.template import Template

X_EXISTS = [{"feature": "local.label", "matchExpressions": {"x": {"op": "Exists"}}}]
# The stated bound: the budget's time plus what a loaded test machine adds around it.
BOUND_S = DEFAULT_BUDGET.max_seconds + 3.0


def features(instances: int = 0, value: str = "a") -> Features:
    f = Features()
    f.add_attributes("local.label", {"x": "a"})
    f.add_instances(
        "local.dev", ({"vendor": f"v{i}", "name": f"{value}{i}"} for i in range(instances))
    )
    return f


def fan_out(levels: int) -> str:
    """Nested {{define}}s, each calling the next twice: 2^levels calls, no output."""
    call = '{{{{template "t{}" .}}}}'
    parts = [f'{{{{define "t{i}"}}}}{call.format(i + 1) * 2}{{{{end}}}}' for i in range(levels)]
    parts.append(f'{{{{define "t{levels}"}}}}{{{{end}}}}')
    return "".join(parts) + '{{template "t0" .}}'


def run_bomb(bomb: dict[str, Any], feats: Features) -> tuple[Any, float]:
    rules = load_rules(
        {"rules": [{"name": "bomb", **bomb}, {"name": "after", "labels": {"after": "true"}}]},
        "budget-test",
    )
    began = time.monotonic()
    out = execute_rules(rules, feats)
    return out, time.monotonic() - began


def assert_stopped(out: Any, took: float) -> None:
    assert out.failed_rules == ["bomb"]
    assert len(out.errors) == 1
    message = out.errors[0]
    assert "rule 'bomb'" in message and "exceeded its evaluation budget" in message
    assert str(DEFAULT_BUDGET) in message  # "1000000 steps / 2s"
    assert out.labels == {"after": "true"}
    assert out.matched_rules == ["after"]
    assert took < BOUND_S


def test_fan_out_template_of_2_to_the_40_calls_ends() -> None:
    source = fan_out(40)
    assert len(source) < 3000  # the 2.7 KB of the report
    out, took = run_bomb({"labelsTemplate": source, "matchFeatures": X_EXISTS}, features())
    assert_stopped(out, took)


@pytest.mark.parametrize(
    "source",
    [
        "{{range until 100000}}{{range until 100000}}{{end}}{{end}}",
        "{{range $i := until 1000}}{{range until 1000}}{{range until 1000}}{{end}}{{end}}{{end}}",
        "{{range 100000}}{{range 100000}}{{end}}{{end}}",
        '{{define "r"}}{{range until 1000}}{{end}}{{end}}'
        '{{range until 100000}}{{template "r"}}{{end}}',
    ],
)
def test_nested_range_bombs_end(source: str) -> None:
    out, took = run_bomb({"labelsTemplate": source, "matchFeatures": X_EXISTS}, features())
    assert_stopped(out, took)


def test_range_over_an_int_beyond_the_budget_is_refused_at_once() -> None:
    out, took = run_bomb(
        {"labelsTemplate": "{{range 1000000000}}{{end}}", "matchFeatures": X_EXISTS}, features()
    )
    assert_stopped(out, took)
    assert "range over 1000000000" in out.errors[0]


def test_huge_match_any_ends() -> None:
    # 1,000 elements of 10 expressions against 10,000 instances: 10^8 evaluations.
    exprs = {f"k{j}": {"op": "In", "value": ["never"]} for j in range(9)}
    exprs["vendor"] = {"op": "In", "value": ["never"]}
    element = {"matchFeatures": [{"feature": "local.dev", "matchExpressions": exprs}]}
    out, took = run_bomb(
        {"labels": {"bomb": "true"}, "matchAny": [element] * 1000}, features(instances=10_000)
    )
    assert_stopped(out, took)


def test_regex_heavy_expression_set_ends() -> None:
    # 100 InRegexp expressions of 100 patterns each against 10,000 instances.
    patterns = [f"^(a|b|c)*{i}[0-9]+$" for i in range(100)]
    exprs = {
        ("name" if j == 0 else f"name{j}"): {"op": "InRegexp", "value": patterns}
        for j in range(100)
    }
    bomb = {
        "labels": {"bomb": "true"},
        "matchFeatures": [{"feature": "local.dev", "matchExpressions": exprs}],
    }
    out, took = run_bomb(bomb, features(instances=10_000, value="b"))
    assert_stopped(out, took)


def test_match_name_over_many_elements_is_charged() -> None:
    f = features()
    f.add_attributes("local.many", {f"k{i}": "v" for i in range(200_000)})
    patterns = [f"^z{i}$" for i in range(10)]
    bomb = {
        "labels": {"bomb": "true"},
        "matchFeatures": [
            {"feature": "local.many", "matchName": {"op": "InRegexp", "value": patterns}}
        ],
    }
    out, took = run_bomb(bomb, f)
    assert_stopped(out, took)


def test_a_given_budget_applies_and_names_itself() -> None:
    rules = load_rules(
        {
            "rules": [
                {
                    "name": "loop",
                    "labelsTemplate": "{{range until 50}}{{end}}",
                    "matchFeatures": X_EXISTS,
                },
                {"name": "plain", "labels": {"plain": "true"}, "matchFeatures": X_EXISTS},
            ]
        },
        "given",
    )
    small = EvalBudget(max_steps=20, max_seconds=60.0)
    out = execute_rules(rules, features(), budget=small)
    assert out.failed_rules == ["loop"]
    assert "(20 steps / 60s)" in out.errors[0]
    assert out.labels == {"plain": "true"}
    # The same rules within the default budget: nothing fails.
    assert execute_rules(rules, features()).failed_rules == []
    with pytest.raises(RuleBudgetExceeded) as caught:
        execute_rule(rules[0], features(), small)
    assert isinstance(caught.value, RuleExecutionError)
    assert "given: rule 'loop' failed: exceeded its evaluation budget" in str(caught.value)


def test_time_budget_stops_slow_steps() -> None:
    # Few steps, each slow: the clock is read at every function call.
    source = '{{range $i := until 50}}{{derivePassword 1 "long" (print $i) "u" "s"}}{{end}}'
    rules = load_rules(
        {"rules": [{"name": "slow", "labelsTemplate": source, "matchFeatures": X_EXISTS}]}, "t"
    )
    began = time.monotonic()
    out = execute_rules(rules, features(), budget=EvalBudget(max_steps=10**9, max_seconds=0.2))
    took = time.monotonic() - began
    assert out.failed_rules == ["slow"]
    assert "more than 0.2s" in out.errors[0]
    assert took < 0.2 + BOUND_S


def test_failed_rules_lists_every_failing_rule_in_order() -> None:
    two_values = {"x": {"op": "Gt", "value": ["1", "2"]}}
    bad_op = [{"feature": "local.label", "matchExpressions": two_values}]
    rules = load_rules(
        {
            "rules": [
                {"name": "bad-op", "labels": {"a": "1"}, "matchFeatures": bad_op},
                {"name": "ok", "labels": {"ok": "1"}},
                {
                    "name": "bad-template",
                    "labelsTemplate": '{{ fail "no" }}',
                    "matchFeatures": X_EXISTS,
                },
            ]
        },
        "order",
    )
    out = execute_rules(rules, features())
    assert out.failed_rules == ["bad-op", "bad-template"]
    assert len(out.errors) == 2
    assert out.labels == {"ok": "1"}


def test_template_alone_gets_the_default_budget() -> None:
    with pytest.raises(TemplateError, match="exceeded its evaluation budget"):
        Template(fan_out(40)).execute({})


def test_legitimate_rules_stay_far_below_the_default_budget() -> None:
    # A template over 2,000 devices with several calls each: well under a tenth of it.
    source = (
        '{{range .local.dev}}{{if hasPrefix "a" .name}}'
        "dev-{{.vendor | lower | trunc 20}}={{.name | upper}}\n{{end}}{{end}}"
    )
    term = {"feature": "local.dev", "matchExpressions": {"vendor": {"op": "Exists"}}}
    rule = load_rules(
        {"name": "devices", "labelsTemplate": source, "matchFeatures": [term]}, "legit"
    )[0]
    out = execute_rules([rule], features(instances=2000), budget=EvalBudget(100_000, 60.0))
    assert not out.errors and len(out.labels) == 2000
