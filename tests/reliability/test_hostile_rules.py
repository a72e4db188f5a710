"""Hostile rules for the rule engine (nfd/rules): catastrophic regexps, template bombs,
deep nesting, thousands of rules. The same engine runs in nfd-master (NodeFeatureRule
objects) and in nfd-worker (custom.d), so a rule must never cost either process its
memory or its CPU: a bad rule gets a clear error, the others still apply.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from nfd.features import Features
from nfd.master.policy import PolicyConfig, check_label
from nfd.rules import RuleError, execute_rules, load_rules, validate_rules
from tests.reliability.recording import REPO, Record

X_EXISTS = [{"feature": "local.label", "matchExpressions": {"x": {"op": "Exists"}}}]
LONG_EXISTS = [{"feature": "local.label", "matchExpressions": {"long": {"op": "Exists"}}}]


def features() -> Features:
    f = Features()
    f.add_attributes("local.label", {"x": "a", "long": "a" * 100_000 + "!"})
    return f


def test_catastrophic_regexps_are_linear(record: Record) -> None:
    record.category, record.title = (
        "hostile",
        (
            "Catastrophic regexps ((a+)+$, (x|x|x)*y, (a|aa)*$) against 100 KB values: in "
            "matchExpressions, matchName, template regex functions and --label-whitelist"
        ),
    )
    patterns = ["(a+)+$", "(x|x|x)*y", "(a|aa)*$", "^(([a-z])+.)+[A-Z]([a-z])+$"]
    rules = []
    for i, pattern in enumerate(patterns):
        rules.append(
            {
                "name": f"expr-{i}",
                "labels": {f"expr-{i}": "true"},
                "matchFeatures": [
                    {
                        "feature": "local.label",
                        "matchExpressions": {"long": {"op": "InRegexp", "value": [pattern]}},
                    }
                ],
            }
        )
        rules.append(
            {
                "name": f"name-{i}",
                "labels": {f"name-{i}": "true"},
                "matchFeatures": [
                    {"feature": "local.label", "matchName": {"op": "InRegexp", "value": [pattern]}}
                ],
            }
        )
        rules.append(
            {
                "name": f"tmpl-{i}",
                "labelsTemplate": (
                    "{{ range .local.label }}"
                    f'{{{{ if regexMatch "{pattern}" .Value }}}}tmpl-{i}=true{{{{ end }}}}'
                    "{{ end }}"
                ),
                "matchFeatures": LONG_EXISTS,
            }
        )
    rules.append({"name": "good", "labels": {"good": "true"}})
    loaded = load_rules({"rules": rules}, "catastrophic")
    began = time.monotonic()
    out = execute_rules(loaded, features())
    took = time.monotonic() - began
    assert out.labels.get("good") == "true"
    assert not out.errors, out.errors
    # (a+)+$ and (x|x|x)*y cannot match "aaa...!"; (a|aa)*$ matches the empty suffix.
    assert not {"expr-0", "expr-1", "tmpl-0", "tmpl-1"} & set(out.labels), out.labels
    assert {"expr-2", "tmpl-2"} <= set(out.labels)
    # --label-whitelist with the same patterns, against the longest valid label name.
    began_wl = time.monotonic()
    for pattern in patterns:
        check_label("example.com/" + "a" * 62 + "b", "1", PolicyConfig(label_whitelist=pattern))
    took_wl = time.monotonic() - began_wl
    record.runs = len(rules) - 1 + len(patterns)
    record.survived = record.runs
    record.measure("engine_seconds", round(took, 3))
    record.measure("whitelist_seconds", round(took_wl, 4))
    record.notes = "RE2 (google-re2) everywhere: matching time is linear in the input"
    assert took < 2.0 and took_wl < 0.5


# Each bomb runs in a child process capped at 1 GiB of address space and a few seconds:
# on this machine an unbounded one would otherwise take the test runner with it.
BOMBS = {
    "repeat": '{{ repeat 2000000000 "x" }}',
    "indent": '{{ indent 2000000000 "x" }}',
    "printf-width": '{{ printf "%1999999999d" 1 }}',
    "until": "{{ range until 1000000000 }}{{ end }}",
    "range-int": "{{ range 1000000000 }}{{ end }}",
    "randAlpha": "{{ randAlpha 2000000000 }}",
    "randBytes": "{{ randBytes 2000000000 }}",
    "derivePassword-loop": (
        '{{ range $i := until 200 }}{{ derivePassword 1 "long" (print $i) "u" "s" }}{{ end }}'
    ),
    "untilStep": "{{ range untilStep 0 1000000000 1 }}{{ end }}",
    "seq": "{{ seq 1 1000000000 }}",
    "nested-range": (
        "{{ range until 2000 }}{{ range until 2000 }}{{ range until 2000 }}"
        "{{ end }}{{ end }}{{ end }}"
    ),
}
BOMB_SECONDS = 10.0
CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    limit = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from nfd.features import Features
    from nfd.rules import execute_rules, load_rules
    f = Features()
    f.add_attributes("local.label", {"x": "a"})
    term = [{"feature": "local.label", "matchExpressions": {"x": {"op": "Exists"}}}]
    rules = load_rules({"rules": [
        {"name": "bomb", "labelsTemplate": sys.argv[1], "matchFeatures": term},
        {"name": "good", "labels": {"good": "true"}},
    ]}, "bomb")
    began = time.monotonic()
    try:
        out = execute_rules(rules, f)
        result = {"labels": out.labels, "errors": out.errors}
    except MemoryError:
        result = {"memory_error": True}
    result["seconds"] = time.monotonic() - began
    print(json.dumps(result))
    """
)


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_template_bombs_are_bounded(bomb: str, record: Record) -> None:
    record.category, record.title = "hostile", f"Template bomb `{BOMBS[bomb]}`"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, BOMBS[bomb]],
            capture_output=True,
            text=True,
            timeout=BOMB_SECONDS,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        record.notes = f"BUG: still running after {BOMB_SECONDS:g}s (CPU/memory bomb)"
        pytest.fail(f"template {BOMBS[bomb]!r} ran for more than {BOMB_SECONDS:g}s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    if result.get("memory_error"):
        record.notes = "BUG: MemoryError under a 1 GiB limit (would be an OOM kill without it)"
        pytest.fail(f"template {BOMBS[bomb]!r} exhausted 1 GiB of memory")
    record.measure("seconds", round(result["seconds"], 2))
    record.notes = "; ".join(e[:160] for e in result["errors"])
    assert result["labels"].get("good") == "true"
    assert any("bomb" in e for e in result["errors"]), result
    record.survived = 1


def test_deep_and_huge_structures(record: Record) -> None:
    record.category, record.title = (
        "hostile",
        (
            "Deeply nested YAML/JSON rule documents, 2,000-deep template nesting, templates "
            "over 64 KiB, alias-heavy YAML"
        ),
    )
    cases = {
        "deep-yaml-list": "rules: " + "[" * 50_000 + "]" * 50_000,
        "deep-yaml-map": "rules: " + "{a: " * 20_000 + "b" + "}" * 20_000,
        "deep-data": _nested(5_000),
        "deep-template": {
            "rules": [
                {
                    "name": "deep",
                    "labelsTemplate": "{{if true}}" * 2000 + "x=1" + "{{end}}" * 2000,
                    "matchFeatures": X_EXISTS,
                }
            ]
        },
        "deep-parens": {
            "rules": [
                {
                    "name": "parens",
                    "labelsTemplate": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
                    "matchFeatures": X_EXISTS,
                }
            ]
        },
        "huge-template": {"rules": [{"name": "huge", "labelsTemplate": "x" * 70_000}]},
        "aliases": _aliases(),
    }
    outcomes = {}
    began = time.monotonic()
    for name, doc in cases.items():
        try:
            rules = load_rules(doc, name)
        except RuleError as err:
            outcomes[name] = f"RuleError: {str(err)[:100]}"
            continue
        out = execute_rules(rules, features())
        validate_rules(rules, name)
        outcomes[name] = f"errors: {[e[:200] for e in out.errors]}" if out.errors else "loaded"
    took = time.monotonic() - began
    record.runs = record.survived = len(cases)
    record.measure("seconds", round(took, 2))
    record.notes = "; ".join(f"{k}: {v}" for k, v in outcomes.items())
    assert outcomes["huge-template"].startswith("RuleError")
    assert "too deep" in outcomes["deep-template"] and "too deep" in outcomes["deep-parens"]
    assert took < 10


def _nested(depth: int) -> dict[str, object]:
    value: object = "x"
    for _ in range(depth):
        value = {"matchFeatures": [value]}
    return {"rules": [{"name": "nested", **value}]}  # type: ignore[dict-item]


def _aliases() -> str:
    """Rule YAML where one anchored value is referenced many times (cheap in YAML,
    expensive if a loader copies it for every reference)."""
    values = "[" + ",".join(f"v{i}" for i in range(1000)) + "]"
    lines = [f"vals: &v {values}", "rules:"]
    for i in range(1000):
        lines.append(
            f"  - {{name: r{i}, labels: {{l{i}: 'true'}}, matchFeatures: [{{feature: "
            f"local.label, matchExpressions: {{x: {{op: In, value: *v}}}}}}]}}"
        )
    return "\n".join(lines)


def test_thousands_of_rules(record: Record) -> None:
    record.category, record.title = "hostile", "5,000 rules in one document"
    count = 5000
    doc = {
        "rules": [
            {
                "name": f"r{i}",
                "labels": {f"rule-{i}": "true"},
                "matchFeatures": [
                    {
                        "feature": "local.label",
                        "matchExpressions": {"x": {"op": "In", "value": ["a", str(i)]}},
                    }
                ],
            }
            for i in range(count)
        ]
    }
    began = time.monotonic()
    rules = load_rules(doc, "many")
    loaded = time.monotonic() - began
    began = time.monotonic()
    out = execute_rules(rules, features())
    executed = time.monotonic() - began
    assert len(out.labels) == count and not out.errors
    record.measure("load_seconds", round(loaded, 2))
    record.measure("execute_seconds", round(executed, 2))
    assert loaded + executed < 10
    record.survived = 1
