"""Rule and NodeFeature files mean to us what they mean to upstream (sigs.k8s.io/yaml), and
``op: ""`` (MatchAny) is accepted where upstream accepts it.

tests/fixtures/kubeyaml/sigs-yaml-v1.6.0.json is the output of oracle.go (beside it), built
against sigs.k8s.io/yaml v1.6.0 (upstream v0.19.0's version) and fed scalars.txt: for each
plain scalar, the string it becomes as a map[string]string value and as a key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nfd import kubeyaml
from nfd.features import Features
from nfd.rules import RuleError, execute_rules, load_rules, validate_rules
from nfd.rules.expression import MatchExpression

DATA = Path(__file__).parent / "fixtures" / "kubeyaml"
ORACLE: dict[str, list[str]] = json.loads((DATA / "sigs-yaml-v1.6.0.json").read_text())


def test_oracle_covers_the_scalars_file() -> None:
    assert set(ORACLE) == set((DATA / "scalars.txt").read_text().splitlines())
    assert "sigs.k8s.io/yaml" in (DATA / "oracle.go").read_text()


@pytest.mark.parametrize("text", sorted(ORACLE))
def test_scalar_as_value_and_key_like_sigs_k8s_io_yaml(text: str) -> None:
    value, key = ORACLE[text]
    try:
        (doc,) = kubeyaml.load_all(f"a: {text}\n")
        mine = "" if doc["a"] is None else doc["a"]  # null lands as "" in a string field
    except yaml.YAMLError:
        mine = "ERROR"
    assert mine == ("ERROR" if value.startswith("ERROR") else value)
    try:
        (doc,) = kubeyaml.load_all(f"{text}: x\n")
        (mine_key,) = doc
    except yaml.YAMLError:
        mine_key = "ERROR"
    assert mine_key == ("ERROR" if key.startswith("ERROR") else key)


def test_quoted_tagged_and_structured_values_stay_as_written() -> None:
    (doc,) = kubeyaml.load_all(
        "a: 'y'\nb: \"1.0\"\nc: !!str 0x10\nd: [y, '1.0', {n: 1e3}]\ne: ~\n"
        "base: &b {k: v}\nmerged: {<<: *b, extra: 1}\n"
    )
    assert doc == {
        "a": "y",
        "b": "1.0",
        "c": "0x10",
        "d": ["true", "1.0", {"false": "1000"}],
        "e": None,
        "base": {"k": "v"},
        "merged": {"k": "v", "extra": "1"},
    }


RULE = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata: {name: yaml-semantics}
spec:
  rules:
    - name: plain-y
      labels: {plain-y: y, float: 1.0, hex: 0x1F}
      matchFeatures:
        - feature: fake.attribute
          matchExpressions:
            enabled: {op: In, value: [y]}
    - name: any
      labels: {any: "yes"}
      matchFeatures:
        - feature: fake.attribute
          matchExpressions:
            enabled: {op: ""}
"""

NODEFEATURE = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeature
metadata: {name: n1, labels: {nfd.node.kubernetes.io/node-name: n1}}
spec:
  features:
    attributes:
      fake.attribute:
        elements: {enabled: y, version: 1.10}
"""


def test_rules_and_features_read_as_upstream_reads_them() -> None:
    (plain, any_rule) = load_rules(RULE, "rule.yaml")
    assert plain.labels == {"plain-y": "true", "float": "1", "hex": "31"}
    (expr,) = plain.match_features[0].match_expressions.values()
    assert expr == MatchExpression("In", ("true",))
    assert any_rule.match_features[0].match_expressions["enabled"].op == ""
    assert validate_rules(RULE, "rule.yaml") == []


def nfd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from nfd.cli.nfd import console_main; console_main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dryrun_of_files_with_kubernetes_yaml(tmp_path: Path) -> None:
    """A NodeFeature with `enabled: y` and a rule asking for [y] match, as upstream: both
    are "true"; the MatchAny rule matches whatever the value."""
    (tmp_path / "rule.yaml").write_text(RULE)
    (tmp_path / "nf.yaml").write_text(NODEFEATURE)
    result = nfd("dryrun", "-f", str(tmp_path / "rule.yaml"), "-n", str(tmp_path / "nf.yaml"))
    assert result.returncode == 0, result.stderr
    labels = json.loads(result.stdout)["labels"]
    assert labels == {"plain-y": "true", "float": "1", "hex": "31", "any": "yes"}
    result = nfd("validate", str(tmp_path / "rule.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_match_any_in_nodefeaturerules_and_worker_rules() -> None:
    features = Features.from_dict(
        {"attributes": {"fake.attribute": {"elements": {"enabled": "false"}}}}
    )
    out = execute_rules(load_rules(RULE, "rule.yaml"), features)
    assert out.labels == {"any": "yes"} and not out.errors
    # Worker custom rules (nfd-worker.conf / custom.d) take it too.
    worker = "- name: w\n  labels: {w: 'on'}\n  matchFeatures:\n"
    worker += "    - feature: fake.attribute\n      matchExpressions: {enabled: {op: ''}}\n"
    (rule,) = load_rules(worker, "custom.d/w.yaml", worker=True)
    assert execute_rules([rule], features).labels == {"w": "on"}
    # With values it is an error when evaluated, as upstream's "must be empty for Op".
    bad = RULE.replace('{op: ""}', '{op: "", value: [x]}')
    out = execute_rules(load_rules(bad, "rule.yaml"), features)
    assert out.errors and "must be empty" in str(out.errors[0])
    assert any("takes no values" in p or "empty" in p for p in validate_rules(bad, "r.yaml"))


def test_unknown_operator_still_refused_naming_match_any() -> None:
    with pytest.raises(RuleError, match='or "" for MatchAny'):
        load_rules(RULE.replace('{op: ""}', "{op: Any}"), "rule.yaml")


def test_null_key_is_refused_like_upstream() -> None:
    with pytest.raises(RuleError, match="null key"):
        load_rules("- name: r\n  labels: {~: x}\n", "rule.yaml")
