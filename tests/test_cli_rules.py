"""``nfd dryrun`` and ``nfd validate`` as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixture_paths import UPSTREAM_E2E_DATA

E2E = UPSTREAM_E2E_DATA
FAKE_FEATURES = {
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


def nfd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from nfd.cli.nfd import console_main; console_main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dryrun_nodefeature_object_yaml_output(tmp_path: Path) -> None:
    result = nfd(
        "dryrun",
        "--rule",
        str(E2E / "nodefeaturerule-1.yaml"),
        "--features",
        str(E2E / "nodefeature-1.yaml"),
        "--output",
        "yaml",
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout) == {
        "labels": {"e2e-attribute-test-2": "true", "e2e-instance-test-2": "true"},
        "annotations": {},
        "taints": [],
        "extendedResources": {},
    }


def test_dryrun_bare_features_json_and_list_of_rule_objects(tmp_path: Path) -> None:
    features = tmp_path / "features.json"
    features.write_text(json.dumps(FAKE_FEATURES))
    rules = tmp_path / "rules.yaml"
    # Two objects, given out of name order: the master runs e2e-test-1 first.
    rules.write_text(
        (E2E / "nodefeaturerule-2.yaml").read_text()
        + "\n---\n"
        + (E2E / "nodefeaturerule-1.yaml").read_text()
        + "\n---\n"
        + (E2E / "nodefeaturerule-3.yaml").read_text()
    )
    result = nfd("dryrun", "--rule", str(rules), "--features", str(features))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"labels", "annotations", "taints", "extendedResources"}
    assert out["labels"]["e2e-matchany-test-1"] == "true"
    assert out["labels"]["dynamic-label"] == "true"
    assert out["labels"]["e2e-template-test-1-instance_2"] == "found"
    assert len(out["taints"]) == 3


def test_dryrun_rule_error_exits_non_zero_naming_rule_and_expression(tmp_path: Path) -> None:
    features = tmp_path / "features.yaml"
    features.write_text(yaml.safe_dump(FAKE_FEATURES))
    rules = tmp_path / "rules.yaml"
    rules.write_text("""
- name: broken-rule
  labels: {x: "1"}
  matchFeatures:
    - feature: fake.attribute
      matchExpressions: {attr_3: {op: GtLt, value: ["10", "1"]}}
- name: fine
  labels: {fine: "1"}
""")
    result = nfd("dryrun", "--rule", str(rules), "--features", str(features))
    assert result.returncode == 1
    assert json.loads(result.stdout)["labels"] == {"fine": "1"}
    assert "broken-rule" in result.stderr and "fake.attribute" in result.stderr
    assert "GtLt" in result.stderr


def test_dryrun_bad_inputs_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: r, matchFeatures: 7}\n")
    result = nfd("dryrun", "--rule", str(bad), "--features", str(E2E / "nodefeature-1.yaml"))
    assert result.returncode == 2 and "bad.yaml" in result.stderr
    result = nfd(
        "dryrun",
        "--rule",
        str(E2E / "nodefeaturerule-1.yaml"),
        "--features",
        str(tmp_path / "missing.yaml"),
    )
    assert result.returncode == 2 and "missing.yaml" in result.stderr


def test_dryrun_against_this_node(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("""
- name: has-kernel
  labels: {kernel-major: "@kernel.version.major"}
  matchFeatures:
    - feature: kernel.version
      matchExpressions: {major: {op: Gt, value: ["0"]}}
""")
    result = nfd(
        "dryrun",
        "--rule",
        str(rules),
        "--host-prefix",
        "/",
        "--features-dir",
        str(tmp_path / "none"),
        "--hooks-dir",
        str(tmp_path / "none"),
        "--rules-dir",
        str(tmp_path / "none"),
    )
    assert result.returncode == 0, result.stderr
    major = json.loads(result.stdout)["labels"]["kernel-major"]
    assert major.isdigit()


def test_validate(tmp_path: Path) -> None:
    good = [str(E2E / f"nodefeaturerule-{n}.yaml") for n in ("1", "2", "6")]
    result = nfd("validate", *good)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
- name: r1
  labels: {"bad key": "x"}
  matchFeatures:
    - feature: a.b
      matchExpressions: {k: {op: Gt, value: ["x"]}}
""")
    result = nfd("validate", *good, str(bad), str(E2E / "nodefeaturerule-5.yaml"))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5
    assert any(line.startswith(f"{bad}: rule 'r1': labels:") for line in lines)
    assert any("matchExpressions.k: not a number 'x'" in line for line in lines)
    assert "5 problem(s)" in result.stderr


def test_validate_worker_files(tmp_path: Path) -> None:
    custom_d = tmp_path / "legacy.yaml"
    custom_d.write_text(
        "- {name: a, matchOn: [{cpuId: [AVX]}]}\n"
        "- {name: b, labels: {b: '1'}, matchFeatures: [{feature: x.y, "
        "matchExpressions: {k: true}}]}\n"
    )
    assert nfd("validate", "--worker", str(custom_d)).returncode == 0
    result = nfd("validate", str(custom_d))
    assert result.returncode == 1 and "matchOn" in result.stdout


def test_validate_and_dryrun_refuse_an_oversized_file_unread(tmp_path: Path) -> None:
    from nfd.rules import MAX_RULE_TEXT_BYTES

    big = tmp_path / "big.yaml"
    one = "- {name: r, labels: {a: b}, matchFeatures: [{feature: a.b}]}\n"
    big.write_text("rules:\n" + one * 420_000)  # 54 MB, 420,000 rules
    result = nfd("validate", str(big))
    assert result.returncode == 1
    assert f"larger than the {MAX_RULE_TEXT_BYTES}-byte limit (MAX_RULE_TEXT_BYTES)" in (
        result.stdout
    )
    features = tmp_path / "features.json"
    features.write_text(json.dumps(FAKE_FEATURES))
    result = nfd("dryrun", "--rule", str(big), "--features", str(features))
    assert result.returncode == 2
    assert "MAX_RULE_TEXT_BYTES" in result.stderr


def test_validate_reads_crlf_files_as_text_mode_did(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"rules:\r\n  - name: r\r\n    labels: {a: b}\r\n")
    result = nfd("validate", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dryrun_why_explains_set_and_missing_labels() -> None:
    result = nfd(
        "dryrun",
        "--rule", str(E2E / "nodefeaturerule-1.yaml"),
        "--features", str(E2E / "nodefeature-1.yaml"),
        "--why", "e2e-instance-test-2",
        "--why", "e2e-flag-test-1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rules = str(E2E / "nodefeaturerule-1.yaml")
    assert result.stdout == (
        "e2e-instance-test-2=true\n"
        f"  set by rule 'e2e-instance-test-2' ({rules})\n"
        "e2e-flag-test-1: not set by these rules\n"
        "  rule 'e2e-flag-test-1' could set it but did not match: "
        "feature 'fake.flag' is not present on the node\n"
    )
