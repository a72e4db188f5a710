"""Rule engine speed: 100 rules of mixed operators against this machine's features.

Target: median full evaluation (all 100 rules, chained through rule.matched,
dynamic values resolved) at most 20 ms.
"""

from __future__ import annotations

import statistics
import time

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.rules import Rule, execute_rules, load_rules
from nfd.worker.config import build_config
from nfd.worker.discovery import run_discovery

TARGET_MS = 20.0


def _first_names(features: Features, name: str, count: int) -> list[str]:
    names = sorted(features.flags.get(name, set())) or sorted(features.attributes.get(name, {}))
    return names[:count] or ["NONE"]


def build_rules(features: Features) -> list[Rule]:
    """100 rules cycling through every operator, feature kind, templates and chaining."""
    cpuid = _first_names(features, "cpu.cpuid", 8)
    modules = _first_names(features, "kernel.loadedmodule", 8)
    kconfig = _first_names(features, "kernel.config", 8)
    templates = [
        # flags
        lambda i: {
            "feature": "cpu.cpuid",
            "matchExpressions": {cpuid[i % len(cpuid)]: {"op": "Exists"}},
        },
        lambda i: {
            "feature": "cpu.cpuid",
            "matchExpressions": {f"NOPE{i}": {"op": "DoesNotExist"}},
        },
        lambda i: {"feature": "cpu.cpuid", "matchName": {"op": "InRegexp", "value": ["^AVX"]}},
        lambda i: {
            "feature": "kernel.loadedmodule",
            "matchExpressions": {modules[i % len(modules)]: {"op": "Exists"}},
        },
        # attributes
        lambda i: {
            "feature": "kernel.version",
            "matchExpressions": {"major": {"op": "Gt", "value": [str(i % 7)]}},
        },
        lambda i: {
            "feature": "kernel.version",
            "matchExpressions": {"full": {"op": "Ge", "value": ["4.18"], "type": "version"}},
        },
        lambda i: {
            "feature": "kernel.version",
            "matchExpressions": {"minor": {"op": "GtLt", "value": ["-1", str(100 + i)]}},
        },
        lambda i: {
            "feature": "kernel.config",
            "matchExpressions": {kconfig[i % len(kconfig)]: {"op": "In", "value": ["y", "m"]}},
        },
        lambda i: {
            "feature": "system.osrelease",
            "matchExpressions": {"ID": {"op": "InRegexp", "value": ["^(debian|ubuntu|rhel)"]}},
        },
        lambda i: {
            "feature": "system.osrelease",
            "matchExpressions": {"ID": {"op": "NotIn", "value": ["windows"]}},
        },
        lambda i: {
            "feature": "cpu.model",
            "matchExpressions": {"family": {"op": "GeLe", "value": ["1", "30"]}},
        },
        lambda i: {"feature": "cpu.model", "matchExpressions": {"vendor_id": {"op": "Exists"}}},
        # instances
        lambda i: {
            "feature": "pci.device",
            "matchExpressions": {
                "vendor": {"op": "In", "value": ["8086", "10de", "1af4"]},
                "class": {"op": "InRegexp", "value": ["^0[0-3]"]},
            },
        },
        lambda i: {"feature": "pci.device", "matchName": {"op": "In", "value": ["vendor"]}},
        lambda i: {
            "feature": "storage.block",
            "matchExpressions": {"rotational": {"op": "IsFalse"}},
        },
        lambda i: {
            "feature": "memory.numa",
            "matchExpressions": {"node_count": {"op": "Le", "value": ["64"]}},
        },
    ]
    raw = []
    for i in range(100):
        term = templates[i % len(templates)](i)
        rule: dict = {
            "name": f"bench-{i}",
            "labels": {f"bench-{i}": "true"},
            "vars": {f"v{i}": str(i)},
            "matchFeatures": [term],
        }
        if i % 10 == 3:
            rule["labelsTemplate"] = (
                "{{ range .cpu.cpuid }}t" + str(i) + "-{{ .Name }}=1\n{{ end }}"
            )
            rule["matchFeatures"] = [
                {"feature": "cpu.cpuid", "matchName": {"op": "InRegexp", "value": ["^SSE"]}}
            ]
        if i % 10 == 5:
            rule["matchAny"] = [
                {"matchFeatures": [templates[(i + 1) % len(templates)](i)]},
                {"matchFeatures": [templates[(i + 2) % len(templates)](i)]},
            ]
        if i % 10 == 7 and i > 10:
            rule["matchFeatures"].append(
                {"feature": "rule.matched", "matchExpressions": {f"v{i - 7}": {"op": "Exists"}}}
            )
        if i % 25 == 0:
            rule["labels"]["dynamic"] = "@kernel.version.major"
        raw.append(rule)
    return load_rules(raw, "bench")


def main() -> None:
    config = build_config({})
    start = time.perf_counter()
    result = run_discovery(HostFS("/"), config, "bench-node")
    print(
        f"discovery: {(time.perf_counter() - start) * 1000:.0f} ms, "
        f"{len(result.features.names())} feature sets"
    )
    features = result.features
    rules = build_rules(features)
    out = execute_rules(rules, features)
    print(
        f"rules: {len(rules)}, matched: {len(out.matched_rules)}, labels: {len(out.labels)}, "
        f"errors: {len(out.errors)}"
    )
    for _ in range(5):  # warm caches (regexps, templates)
        execute_rules(rules, features)
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        execute_rules(rules, features)
        times.append((time.perf_counter() - t0) * 1000)
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95)]
    verdict = "OK" if median <= TARGET_MS else "OVER TARGET"
    print(
        f"100-rule evaluation: median {median:.2f} ms, p95 {p95:.2f} ms "
        f"(target <= {TARGET_MS:.0f} ms) {verdict}"
    )


if __name__ == "__main__":
    main()
