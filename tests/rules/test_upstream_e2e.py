"""Upstream's e2e NodeFeatureRules (test/e2e/data) against the fake source's features.

The e2e suite runs the worker with only the ``fake`` source and applies the
rule objects one after another; rules of later objects see earlier objects'
``rule.matched``. The expected labels are what upstream's e2e test asserts,
plus the matchName rules (``*-test-2``) that upstream added in v0.15.
"""

from __future__ import annotations

from nfd.cli.rules import merge_nodefeature, parse_features_document
from nfd.rules import execute_rules, load_rules, validate_rules
from tests.fixture_paths import UPSTREAM_E2E_DATA
from tests.rules.test_engine import fake_features

DATA = UPSTREAM_E2E_DATA


def rules_of(*names: str) -> list:
    rules = []
    for name in names:
        path = DATA / f"nodefeaturerule-{name}.yaml"
        rules += load_rules(path.read_text(), str(path))
    return rules


EXPECTED_1 = {
    "e2e-flag-test-1": "true",
    "e2e-flag-test-2": "true",
    "e2e-attribute-test-1": "true",
    "e2e-attribute-test-2": "true",
    "e2e-instance-test-1": "true",
    "e2e-instance-test-2": "true",
}
EXPECTED_2 = {
    "e2e-matchany-test-1": "true",
    "dynamic-label": "true",
    "e2e-template-test-1-instance_1": "found",
    "e2e-template-test-1-instance_2": "found",
    "e2e-template-test-2-attr_2": "false",
    "e2e-template-test-2-attr_3": "10",
}


def test_rule_1_flags_attributes_instances() -> None:
    out = execute_rules(rules_of("1"), fake_features())
    assert out.labels == EXPECTED_1
    assert out.errors == []
    assert out.vars == {
        "e2e-flag-test-1.not": "false",
        "e2e-attribute-test-1.not": "false",
        "e2e-instance-test-1.not": "false",
        "e2e-instance-test-1.123": "123",
    }


def test_rule_2_backrefs_match_any_templates() -> None:
    out = execute_rules(rules_of("1", "2"), fake_features())
    assert out.labels == EXPECTED_1 | EXPECTED_2
    # Without rule 1's vars, rule 2's matchany rule cannot match.
    alone = execute_rules(rules_of("2"), fake_features())
    assert "e2e-matchany-test-1" not in alone.labels


def test_rule_3_taints() -> None:
    out = execute_rules(rules_of("3"), fake_features())
    assert out.taints == [
        {
            "key": "feature.node.kubernetes.io/fake-special-node",
            "value": "exists",
            "effect": "PreferNoSchedule",
        },
        {
            "key": "feature.node.kubernetes.io/fake-dedicated-node",
            "value": "true",
            "effect": "NoExecute",
        },
        {
            "key": "feature.node.kubernetes.io/performance-optimized-node",
            "value": "true",
            "effect": "NoExecute",
        },
    ]
    updated = execute_rules(rules_of("3-updated"), fake_features())
    assert [t["key"] for t in updated.taints] == [
        "feature.node.kubernetes.io/fake-special-node",
        "feature.node.kubernetes.io/foo",
        "kubernetes.io/denied-1",
        "node.kubernetes.io/denied-2",
        "unprefixed-taint",
    ]
    # The master filters the last three; validate flags them.
    problems = validate_rules((DATA / "nodefeaturerule-3-updated.yaml").read_text(), "3u")
    assert len(problems) == 3


def test_rule_4_extended_resources() -> None:
    out = execute_rules(rules_of("4"), fake_features())
    assert out.extended_resources == {
        "nons": "123",
        "vendor.io/dynamic": "10",
        "vendor.feature.node.kubernetes.io/static": "123",
        "bad.kubernetes.io/malo": "999",
    }
    problems = validate_rules((DATA / "nodefeaturerule-4.yaml").read_text(), "4")
    assert len(problems) == 1 and "bad.kubernetes.io" in problems[0]


def test_rule_5_annotations() -> None:
    out = execute_rules(rules_of("5"), fake_features())
    assert out.annotations["custom.vendor.io/feature"] == "baz"
    assert len(out.annotations) == 6
    problems = validate_rules((DATA / "nodefeaturerule-5.yaml").read_text(), "5")
    assert sorted(p.split("annotation '")[1].split("'")[0] for p in problems) == [
        "kubernetes.io/feature",
        "nfd.node.kubernetes.io/xyz",
        "subns.kubernetes.io/blah",
    ]


def test_rule_6_unconditional() -> None:
    out = execute_rules(rules_of("6"), fake_features())
    assert out.labels == {"e2e.feature.node.kubernetes.io/restricted-label-1": "true"}
    assert out.extended_resources == {"e2e.feature.node.kubernetes.io/restricted-er-1": "2"}


def test_with_nodefeature_1_merged_as_the_master_does() -> None:
    features = fake_features()
    extra = parse_features_document((DATA / "nodefeature-1.yaml").read_text(), "nf1")
    merge_nodefeature(features, extra)
    # nodefeature-1 overrides attr_2 to "true" and adds instance-x.
    out = execute_rules(rules_of("1", "2"), features)
    assert "e2e-attribute-test-1" not in out.labels  # attr_2 no longer false
    assert "e2e-matchany-test-1" not in out.labels  # it needed rule 1's output
    assert out.labels["e2e-template-test-1-instance-x"] == "found"


def test_nodefeature_1_alone() -> None:
    features = parse_features_document((DATA / "nodefeature-1.yaml").read_text(), "nf1")
    out = execute_rules(rules_of("1"), features)
    assert out.labels == {"e2e-attribute-test-2": "true", "e2e-instance-test-2": "true"}


def test_all_rule_files_load_and_only_expected_ones_have_problems() -> None:
    for path in sorted(DATA.glob("nodefeaturerule-*.yaml")):
        problems = validate_rules(path.read_text(), str(path))
        if path.stem in ("nodefeaturerule-3-updated", "nodefeaturerule-4", "nodefeaturerule-5"):
            assert problems, path
        else:
            assert problems == [], problems
