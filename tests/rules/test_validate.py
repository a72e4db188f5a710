"""validate_rules reports every problem with origin, rule and field."""

from __future__ import annotations

from nfd.rules import validate_rules

BAD = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: bad}
spec:
  rules:
    - name: r1
      labels:
        "bad key!": "x"
        ok: "not valid value!"
        kubernetes.io/denied: "x"
        fine: "@kernel.version.major"
      annotations: {vendor.io/a: "x"}
      taints:
        - {key: vendor.io/t, effect: Sometimes}
        - {key: vendor.io/u}
      extendedResources: {vendor.io/r: "lots"}
      labelsTemplate: "{{ if }}"
      matchFeatures:
        - feature: nodot
        - feature: a.b
          matchExpressions:
            x: {op: Gt, value: ["1", "2"]}
            re: {op: InRegexp, value: ["("]}
            z: {op: GtLt, value: ["5", "1"]}
            w: {op: Exists, value: ["1"]}
          matchName: {op: In}
"""


def test_every_problem_is_reported_with_context() -> None:
    problems = validate_rules(BAD, "bad.yaml")
    text = "\n".join(problems)
    assert all(p.startswith("bad.yaml: rule 'r1': ") for p in problems)
    for needle in [
        "labels: invalid label name 'bad key!'",
        "labels: label 'ok': invalid value",
        "namespace 'kubernetes.io' is not allowed",
        "taints[0]: taint vendor.io/t=:Sometimes: invalid taint effect",
        "taints[1]: taint vendor.io/u=:: empty taint effect",
        "extendedResources: extended resource 'vendor.io/r': invalid quantity 'lots'",
        "labelsTemplate: invalid template",
        "matchFeatures[0] (feature 'nodot'): invalid feature name",
        "matchFeatures[1] (feature 'a.b').matchExpressions.x: op 'Gt' needs exactly one value",
        "matchExpressions.re: invalid regular expression",
        "matchExpressions.z: op 'GtLt': value[0] must be less than value[1]",
        "matchExpressions.w: op 'Exists' takes no values",
        "matchName: op 'In' needs at least one value",
    ]:
        assert needle in text, needle
    assert "fine" not in text  # dynamic values are checked with a dummy
    assert len(problems) == 13


def test_load_errors_become_problems() -> None:
    problems = validate_rules("- {name: r, matchFeatures: 5}", "x.yaml")
    assert len(problems) == 1 and problems[0].startswith("x.yaml")


def test_valid_rules_have_no_problems() -> None:
    assert (
        validate_rules(
            "- {name: r, labels: {a: b}, matchFeatures: [{feature: cpu.cpuid, "
            "matchExpressions: {AVX: {op: Exists}}}]}",
            "ok.yaml",
        )
        == []
    )
