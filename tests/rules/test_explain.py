"""Why a rule label is or is not set (nfd.rules.explain), on upstream's e2e rules."""

from __future__ import annotations

from nfd.features import Features
from nfd.rules import load_rules
from nfd.rules.explain import explain_label, render
from tests.fixture_paths import UPSTREAM_E2E_DATA

RULES = load_rules((UPSTREAM_E2E_DATA / "nodefeaturerule-1.yaml").read_text(), "rules.yaml")
FEATURES = Features.from_dict(
    {
        "flags": {"fake.flag": {"elements": {"flag_1": {}, "flag_2": {}, "flag_3": {}}}},
        "attributes": {
            "fake.attribute": {"elements": {"attr_1": "true", "attr_2": "false", "attr_3": "10"}}
        },
        "instances": {
            "fake.instance": {
                "elements": [
                    {"attributes": {"name": "instance_1", "attr_1": "true", "attr_3": "10"}},
                    {"attributes": {"name": "instance_2", "attr_1": "true", "attr_3": "100"}},
                ]
            }
        },
    }
)


def why(label: str) -> str:
    return render(explain_label(RULES, FEATURES, label))


def test_a_set_label_names_its_rule_and_file():
    assert (
        why("e2e-flag-test-1")
        == "e2e-flag-test-1=true\n  set by rule 'e2e-flag-test-1' (rules.yaml)\n"
    )
    # The default namespace may be spelt out.
    assert why("feature.node.kubernetes.io/e2e-instance-test-1").startswith(
        "feature.node.kubernetes.io/e2e-instance-test-1=true\n  set by rule 'e2e-instance-test-1'"
    )


def test_a_missing_label_shows_the_first_failed_expression_and_the_node_value():
    assert why("e2e-flag-test-neg-1") == (
        "e2e-flag-test-neg-1: not set by these rules\n"
        "  rule 'e2e-flag-test-neg-1' could set it but did not match: feature 'fake.flag': "
        "flag_1 {op: DoesNotExist}: the node has flag flag_1\n"
    )
    # attr_1 IsTrue holds; the second expression is the first that fails.
    assert "attr_2 {op: IsTrue}: the node has attr_2='false'" in why("e2e-attribute-test-neg-1")
    assert "no element name matches {op: In, value: [flag_x]}" in why("e2e-flag-test-neg-2")
    assert "attr_3 {op: Lt, value: [10]}: instances have attr_3 in ['10', '100']" in why(
        "e2e-instance-test-neg-1"
    )


def test_an_absent_feature_and_an_unknown_label():
    empty = render(explain_label(RULES, Features(), "e2e-flag-test-1"))
    assert "feature 'fake.flag' is not present on the node" in empty
    assert why("nothing") == "nothing: not set by these rules\n  no rule names it in its labels\n"


def test_rules_see_the_earlier_rules_output():
    text = """
    - name: first
      labels: {a: "1"}
      matchFeatures: [{feature: fake.flag, matchExpressions: {flag_1: {op: Exists}}}]
    - name: second
      labels: {b: "1"}
      matchFeatures: [{feature: rule.matched, matchExpressions: {a: {op: In, value: ["2"]}}}]
    """
    rules = load_rules(text, "chain.yaml")
    assert "a {op: In, value: [2]}: the node has a='1'" in render(
        explain_label(rules, FEATURES, "b")
    )
