"""The rule-engine findings of the hostile probe (issue 15), as real processes where users
have them: a labelsTemplate of nested ``{{template}}`` calls fanning out 2^40 times that
emits nothing (in the rule engine the master runs, and in a real ``nfd-worker`` through
custom.d), a 54 MB / 420,000-rule file given to ``nfd validate``, and 100,000
matchExpressions in one rule. Each must end quickly with an error that names the rule or
the limit, and the other rules must still apply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from nfd.features import Features
from nfd.rules import DEFAULT_BUDGET, RuleError, execute_rules, load_rules
from tests.reliability.recording import REPO, Record

X_EXISTS = [{"feature": "local.label", "matchExpressions": {"x": {"op": "Exists"}}}]
SLACK_S = 3.0  # what a loaded test machine adds around a stated limit


def fan_out(levels: int = 40) -> str:
    call = '{{{{template "t{}" .}}}}'
    parts = [f'{{{{define "t{i}"}}}}{call.format(i + 1) * 2}{{{{end}}}}' for i in range(levels)]
    return "".join(parts) + f'{{{{define "t{levels}"}}}}{{{{end}}}}{{{{template "t0" .}}}}'


# Prepended to a child's code: it reports its own peak RSS on exit (VmHWM: of this
# program's memory only; ru_maxrss would carry the forking test process's peak over exec).
PEAK = (
    "import atexit, sys; atexit.register(lambda: sys.stderr.write(next("
    "line for line in open('/proc/self/status') if line.startswith('VmHWM:'))"
    ".replace('VmHWM:', 'PEAK_RSS_KIB=').replace(' kB', '').replace(' ', '')"
    ".replace(chr(9), ''))); "
)


def run_measured(code: str, args: list[str], timeout: float) -> tuple[int, str, str, float, int]:
    """Run Python ``code`` in a child; its exit code, output, wall seconds, peak RSS (KiB)."""
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", PEAK + code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
    took = time.monotonic() - began
    peaks = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KIB=")]
    peak_kib = int(peaks[-1].partition("=")[2]) if peaks else 0
    return proc.returncode, proc.stdout, proc.stderr, took, peak_kib


def test_fan_out_template_in_the_masters_engine(record: Record) -> None:
    record.category = "hostile"
    record.title = (
        "labelsTemplate of nested {{template}} calls fanning out 2^40 times, emitting nothing "
        "(2.7 KB), evaluated by the rule engine nfd-master runs"
    )
    source = fan_out()
    rules = load_rules(
        {
            "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
            "kind": "NodeFeatureRule",
            "metadata": {"name": "bomb"},
            "spec": {
                "rules": [
                    {"name": "fan-out", "labelsTemplate": source, "matchFeatures": X_EXISTS},
                    {"name": "after", "labels": {"after": "true"}, "matchFeatures": X_EXISTS},
                ]
            },
        },
        "NodeFeatureRule bomb",
    )
    features = Features()
    features.add_attributes("local.label", {"x": "a"})
    began = time.monotonic()
    out = execute_rules(rules, features)
    took = time.monotonic() - began
    record.bound_s = DEFAULT_BUDGET.max_seconds + SLACK_S
    record.measure("template_bytes", len(source))
    record.measure("seconds", round(took, 2))
    record.notes = out.errors[0][:200] if out.errors else "no error"
    assert out.failed_rules == ["fan-out"]
    assert "rule 'fan-out'" in out.errors[0] and "evaluation budget" in out.errors[0]
    assert out.labels == {"after": "true"}
    assert took < record.bound_s
    record.survived = 1


def test_fan_out_template_in_a_real_worker_custom_d(tmp_path: Path, record: Record) -> None:
    record.category = "hostile"
    record.title = (
        "The same 2^40 fan-out template in a custom.d rule file of a real nfd-worker "
        "(--oneshot --no-publish): discovery ends, the other rules' labels are published"
    )
    rules_dir = tmp_path / "custom.d"
    rules_dir.mkdir()
    always = [{"feature": "kernel.version", "matchExpressions": {"major": {"op": "Exists"}}}]
    doc = [
        {"name": "fan-out", "labelsTemplate": fan_out(), "matchFeatures": always},
        {"name": "after", "labels": {"probe-after": "true"}},
    ]
    (rules_dir / "bomb.yaml").write_text(yaml.safe_dump(doc))
    worker = "from nfd.cli.worker import console_main; console_main()"
    code, out, err, took, peak_kib = run_measured(
        worker, ["--oneshot", "--no-publish", f"--rules-dir={rules_dir}"], timeout=120
    )
    record.measure("peak_rss_mib", round(peak_kib / 1024))
    record.bound_s = DEFAULT_BUDGET.max_seconds + 20.0  # a whole oneshot discovery around it
    record.measure("seconds", round(took, 2))
    assert code == 0, err[-2000:]
    labels = json.loads(out.splitlines()[-1])
    assert labels.get("probe-after") == "true"
    assert "fan-out" in err and "evaluation budget" in err
    assert took < record.bound_s
    record.notes = next(line for line in err.splitlines() if "evaluation budget" in line)[-200:]
    record.survived = 1


def test_validate_of_a_54_mb_rule_file(tmp_path: Path, record: Record) -> None:
    record.category = "hostile"
    record.title = (
        "nfd validate on a 61 MB rule file of 420,000 rules (the probe: 54 MB, >150 s, 2.2 GB)"
    )
    big = tmp_path / "big.yaml"
    one = (
        "- {name: rule-0000000, labels: {example.com/probe: 'true'}, matchFeatures: "
        "[{feature: kernel.version, matchExpressions: {major: {op: Exists}}}]}\n"
    )
    with big.open("w") as f:  # in chunks: the test process's memory stays small
        f.write("rules:\n")
        for _ in range(42):
            f.write(one * 10_000)
    cli = "from nfd.cli.nfd import console_main; console_main()"
    code, out, _err, took, peak_kib = run_measured(cli, ["validate", str(big)], timeout=60)
    record.measure("file_mb", round(os.path.getsize(big) / 1e6, 1))
    record.measure("seconds", round(took, 2))
    record.measure("peak_rss_mib", round(peak_kib / 1024))
    record.bound_s = 10.0  # process start-up included; the refusal itself is milliseconds
    assert code == 1
    assert "MAX_RULE_TEXT_BYTES" in out
    record.notes = out.strip()[-200:]
    assert took < record.bound_s
    record.survived = 1


def test_100000_match_expressions_in_one_rule(record: Record) -> None:
    record.category = "hostile"
    record.title = "100,000 matchExpressions in one rule, as an object and as text (was: 15 s)"
    exprs: dict[str, Any] = {f"k{i}": {"op": "Exists"} for i in range(100_000)}
    obj = {"name": "wide", "matchFeatures": [{"feature": "a.b", "matchExpressions": exprs}]}
    spread = {
        "name": "spread",
        "matchFeatures": [
            {"feature": "a.b", "matchExpressions": dict(list(exprs.items())[i : i + 1000])}
            for i in range(0, 100_000, 1000)
        ],
    }
    # JSON is YAML, and dumps 2.8 MB in milliseconds where PyYAML's dumper takes 20 s.
    text = json.dumps({"rules": [obj]})
    outcomes = {}
    began = time.monotonic()
    for name, data in (
        ("object", {"rules": [obj]}),
        ("spread", {"rules": [spread]}),
        ("text", text),
    ):
        try:
            load_rules(data, name)
            outcomes[name] = "loaded"
        except RuleError as err:
            outcomes[name] = str(err)[-120:]
    took = time.monotonic() - began
    record.measure("seconds", round(took, 3))
    record.measure("text_mb", round(len(text) / 1e6, 1))
    record.notes = "; ".join(f"{k}: {v}" for k, v in outcomes.items())
    record.bound_s = 1.0
    assert "MAX_EXPRESSIONS_PER_" in outcomes["object"]
    assert "MAX_EXPRESSIONS_PER_RULE" in outcomes["spread"]
    assert "MAX_RULE_TEXT_BYTES" in outcomes["text"]
    assert took < record.bound_s
    record.survived = 1
