"""Rule execution: terms, matchAny, templates, back-references, chaining, errors."""

from __future__ import annotations

import copy

import pytest

from nfd.features import Features
from nfd.rules import RuleError, execute_rules, load_rules, static_rules


def fake_features() -> Features:
    """The fake source's default features (upstream's e2e input)."""
    f = Features()
    f.add_flags("fake.flag", ["flag_1", "flag_2", "flag_3"])
    f.add_attributes("fake.attribute", {"attr_1": "true", "attr_2": "false", "attr_3": "10"})
    f.add_instances(
        "fake.instance",
        [
            {
                "name": "instance_1",
                "attr_1": "true",
                "attr_2": "false",
                "attr_3": "10",
                "attr_4": "foobar",
            },
            {"name": "instance_2", "attr_1": "true", "attr_2": "true", "attr_3": "100"},
            {"name": "instance_3"},
        ],
    )
    f.add_attributes("kernel.version", {"major": "6", "minor": "8", "full": "6.8.0-45-generic"})
    return f


def run(yaml_text: str, features: Features | None = None):
    return execute_rules(load_rules(yaml_text, "test.yaml"), features or fake_features())


def test_missing_feature_fails_term_even_with_does_not_exist() -> None:
    out = run("""
- name: r
  labels: {x: "1"}
  matchFeatures:
    - feature: no.such
      matchExpressions: {a: {op: DoesNotExist}}
""")
    assert out.labels == {}


def test_feature_name_is_case_insensitive() -> None:
    out = run("""
- name: r
  labels: {x: "1"}
  matchFeatures: [{feature: Fake.Flag, matchExpressions: {flag_1: {op: Exists}}}]
""")
    assert out.labels == {"x": "1"}


def test_rule_without_matchers_always_matches() -> None:
    out = run(
        "[{name: r, labels: {a: b}, annotations: {vendor.io/n: v}, "
        "taints: [{key: vendor.io/t, effect: NoSchedule}], "
        "extendedResources: {vendor.io/r: '3'}}]"
    )
    assert out.labels == {"a": "b"}
    assert out.annotations == {"vendor.io/n": "v"}
    assert out.taints == [{"key": "vendor.io/t", "value": "", "effect": "NoSchedule"}]
    assert out.extended_resources == {"vendor.io/r": "3"}


def test_match_any_is_or_and_match_features_is_and() -> None:
    text = """
- name: r
  labels: {x: "1"}
  matchAny:
    - matchFeatures: [{feature: fake.attribute, matchExpressions: {attr_1: {op: IsFalse}}}]
    - matchFeatures: [{feature: fake.attribute, matchExpressions: {attr_3: {op: Gt, value: ["5"]}}}]
  matchFeatures:
    - feature: fake.flag
      matchExpressions: {flag_1: {op: Exists}}
    - feature: kernel.version
      matchExpressions: {major: {op: Ge, value: ["6"]}}
"""
    assert run(text).labels == {"x": "1"}
    assert run(text.replace('value: ["5"]', 'value: ["50"]')).labels == {}
    assert run(text.replace("flag_1", "flag_9")).labels == {}


def test_error_aborts_only_that_rule() -> None:
    out = run("""
- name: bad
  labels: {bad: "1"}
  matchFeatures:
    - feature: fake.attribute
      matchExpressions: {attr_3: {op: Gt, value: ["1", "2"]}}
- name: good
  labels: {good: "1"}
""")
    assert out.labels == {"good": "1"}
    assert len(out.errors) == 1
    assert "'bad'" in out.errors[0] and "fake.attribute" in out.errors[0]
    assert "exactly one element" in out.errors[0]


def test_error_only_when_value_present_as_upstream() -> None:
    # Against a missing key upstream never looks at the operands.
    out = run("""
- name: r
  labels: {x: "1"}
  matchFeatures: [{feature: fake.attribute, matchExpressions: {nope: {op: Gt, value: []}}}]
""")
    assert out.errors == [] and out.labels == {}


def test_templates_and_backrefs_and_chaining() -> None:
    out = run("""
- name: t1
  labelsTemplate: |
    {{ range .fake.instance }}inst-{{ .name }}={{ .attr_3 }}
    {{ end }}
  varsTemplate: "{{ range .fake.attribute }}v-{{ .Name }}={{ .Value }}{{ end }}"
  matchFeatures:
    - feature: fake.instance
      matchExpressions: {attr_3: {op: Exists}}
    - feature: fake.attribute
      matchExpressions: {attr_3: {op: Exists}}
- name: t2
  labels: {chained: "yes", dyn: "@fake.attribute.attr_3", dyn2: "@rule.matched.inst-instance_2"}
  matchFeatures:
    - feature: rule.matched
      matchExpressions:
        inst-instance_1: {op: In, value: ["10"]}
        v-attr_3: {op: Gt, value: ["9"]}
""")
    assert out.labels == {
        "inst-instance_1": "10",
        "inst-instance_2": "100",
        "chained": "yes",
        "dyn": "10",
        "dyn2": "100",
    }
    assert out.vars == {"v-attr_3": "10"}
    assert out.errors == []


def test_labels_win_over_template_and_dynamic_failure_is_recorded() -> None:
    out = run("""
- name: r
  labels: {a: static, missing: "@no.such.thing"}
  labelsTemplate: "a=templated\\nb=templated"
  matchFeatures: [{feature: fake.flag}]
""")
    assert out.labels == {"a": "static", "b": "templated"}
    assert any("missing" in e and "no.such" in e for e in out.errors)


def test_templates_run_only_inside_a_match() -> None:
    # As upstream: a rule without matchers never executes its templates.
    assert run("- {name: r, labelsTemplate: 'a=b'}").labels == {}


def test_template_line_without_equals_is_an_error() -> None:
    out = run(
        "- {name: r, labelsTemplate: 'no-equals-here', matchFeatures: [{feature: fake.flag}]}"
    )
    assert out.labels == {} and "format must be" in out.errors[0]


def test_match_any_templates_run_per_matching_element() -> None:
    out = run("""
- name: r
  labelsTemplate: "{{ range .fake.attribute }}{{ .Name }}={{ .Value }}\\n{{ end }}"
  matchAny:
    - matchFeatures: [{feature: fake.attribute, matchExpressions: {attr_1: {op: IsTrue}}}]
    - matchFeatures: [{feature: fake.attribute, matchExpressions: {attr_2: {op: IsFalse}}}]
    - matchFeatures: [{feature: fake.attribute, matchExpressions: {attr_3: {op: In, value: [x]}}}]
""")
    assert out.labels == {"attr_1": "true", "attr_2": "false"}


def test_rule_matched_exists_only_after_a_rule_ran() -> None:
    text = """
- name: first
  labels: {a: "1"}
  matchFeatures: [{feature: rule.matched, matchExpressions: {zzz: {op: DoesNotExist}}}]
- name: second
  labels: {b: "1"}
  matchFeatures: [{feature: rule.matched, matchExpressions: {zzz: {op: DoesNotExist}}}]
"""
    assert run(text).labels == {"b": "1"}


def test_input_features_are_not_mutated() -> None:
    features = fake_features()
    before = copy.deepcopy(features)
    out = run("[{name: r, labels: {a: '1'}, vars: {v: '2'}}]", features)
    assert out.labels == {"a": "1"}
    assert features == before
    assert "rule.matched" not in features.attributes


def test_static_rules() -> None:
    f = Features()
    f.add_instances("pci.device", [{"vendor": "8086"}, {"vendor": "15b3", "class": "0207"}])
    f.add_flags("kernel.loadedmodule", ["ib_uverbs", "rdma_ucm", "ext4"])
    assert execute_rules(static_rules(), f).labels == {
        "rdma.capable": "true",
        "rdma.available": "true",
    }
    f.flags["kernel.loadedmodule"] = {"ib_uverbs"}
    f.instances["pci.device"] = [{"vendor": "10de"}]
    assert execute_rules(static_rules(), f).labels == {}


def test_loader_errors_name_origin_rule_and_field() -> None:
    terms = "- {name: r, matchFeatures: [{feature: a.b, matchExpressions: {k: %s}}]}"
    cases = {
        terms % "{op: Nope}": "rule 'r'): matchFeatures[0] (feature 'a.b'): matchExpressions.k: op",
        "- {name: r, labels: [a]}": "rule 'r'): labels",
        "- {labels: {a: b}}": "name",
        "- {name: r, matchFeatures: {feature: a.b}}": "matchFeatures",
        "- {name: r, bogus: 1}": "unknown field(s) bogus",
        terms % "{op: In, value: x}": "value",
        "- {name: r, taints: [{effect: NoSchedule}]}": "taints[0]: key",
        "a: [": "invalid YAML",
        "- {name: r, matchOn: [{cpuId: [AVX]}]}": "matchOn",
    }
    for text, expected in cases.items():
        with pytest.raises(RuleError) as info:
            load_rules(text, "origin.yaml")
        assert "origin.yaml" in str(info.value)
        assert expected in str(info.value), (text, str(info.value))


def test_loader_shapes_and_object_order() -> None:
    objects = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: b-second}
spec: {rules: [{name: from-b}]}
---
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: a-first}
spec: {rules: [{name: from-a}]}
"""
    assert [r.name for r in load_rules(objects, "x")] == ["from-a", "from-b"]
    assert [r.name for r in load_rules({"rules": [{"name": "s"}]}, "x")] == ["s"]
    assert [r.name for r in load_rules([{"name": "l"}], "x")] == ["l"]
    assert load_rules("", "x") == []


def test_worker_shorthands() -> None:
    rules = load_rules(
        """
- name: r
  labels: {x: "1"}
  matchFeatures:
    - feature: fake.attribute
      matchExpressions: {attr_1: true, attr_3: [9, 10], attr_2: null}
    - feature: fake.flag
      matchExpressions: [flag_1, "flag_2=whatever"]
""",
        "worker.conf",
        worker=True,
    )
    exprs = rules[0].match_features[0].match_expressions
    assert exprs is not None
    assert (exprs["attr_1"].op, exprs["attr_1"].value) == ("In", ("true",))
    assert exprs["attr_3"].value == ("9", "10")
    assert exprs["attr_2"].op == "Exists"
    # The CRD form does not accept shorthands.
    with pytest.raises(RuleError):
        load_rules("- {name: r, matchFeatures: [{feature: a.b, matchExpressions: {k: x}}]}", "x")
