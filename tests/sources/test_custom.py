"""custom source: built-in, nfd-worker.conf and custom.d rules, in upstream's order."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.custom import SOURCE, load_rules_dir, rule_files
from nfd.worker.config import ConfigError, parse_config_text
from nfd.worker.discovery import compute_labels


def host_features() -> Features:
    f = Features()
    f.add_instances("pci.device", [{"vendor": "15b3", "class": "0207", "device": "101b"}])
    f.add_flags("kernel.loadedmodule", ["ib_uverbs", "rdma_ucm", "nvidia"])
    f.add_attributes("kernel.version", {"major": "6", "minor": "8"})
    f.add_attributes("system.name", {"nodename": "node-a"})
    return f


CONFIG = """
core:
  labelSources: [custom]
sources:
  custom:
    - name: "kernel 6"
      labels: {kernel-6: "true"}
      vars: {k6: "yes"}
      matchFeatures:
        - feature: kernel.version
          matchExpressions: {major: {op: In, value: ["6"]}}
    - name: chained
      labels: {vendor.io/chained: "true"}
      matchFeatures:
        - feature: rule.matched
          matchExpressions: {k6: "yes", rdma.capable: "true"}
    - name: legacy-gpu
      matchOn:
        - loadedKMod: [nvidia]
    - name: dynamic
      labels: {dyn: "@kernel.version.major"}
"""


def test_config_rules_static_rules_and_chaining() -> None:
    config = parse_config_text(CONFIG, "nfd-worker.conf")
    assert config.sources["custom"]["rules"][0]["name"] == "kernel 6"
    warnings: list[str] = []
    labels = compute_labels(host_features(), HostFS("/"), config, "node-a", warnings)
    assert labels == {
        "rdma.capable": "true",
        "rdma.available": "true",
        "kernel-6": "true",
        "vendor.io/chained": "true",
        "custom-legacy-gpu": "true",
    }
    # As upstream's worker, a dynamic value is not resolved: the label is dropped.
    assert any("dyn" in w for w in warnings)


def test_bad_rule_in_config_invalidates_the_file() -> None:
    with pytest.raises(ConfigError, match="nfd-worker.conf:2: sources.custom.*rule 'x'.*op"):
        parse_config_text(
            "sources:\n  custom:\n    - name: x\n      matchFeatures:\n"
            "        - feature: a.b\n          matchExpressions: {k: {op: Bogus}}\n",
            "nfd-worker.conf",
        )


def test_mapping_form_and_rules_dir_override(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("- {name: from-dir, labels: {from-dir: 'true'}}\n")
    config = parse_config_text(
        f"sources:\n  custom:\n    rulesDir: {tmp_path}\n"
        "    rules: [{name: c, labels: {c: '1'}}]\n",
        "x.conf",
    )
    labels = SOURCE.labels(Features(), SourceContext(HostFS("/"), config.sources["custom"]))
    assert labels == {"c": "1", "from-dir": "true"}

    from nfd.cli.common import apply_overrides

    other = tmp_path / "other"
    other.mkdir()
    config = parse_config_text("", "x.conf")
    args = argparse.Namespace(rules_dir=str(other), features_dir=None, hooks_dir=None)
    apply_overrides(config, args)
    assert config.sources["custom"]["rulesDir"] == str(other)


def test_rules_dir_layout_order_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("- {name: b, labels: {order: b}}\n")
    (tmp_path / "a.yaml").write_text("- {name: a, labels: {order: a, a: '1'}}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text("- {name: c, matchOn: [{loadedKMod: [nvidia]}]}\n")
    (tmp_path / "sub" / "deeper").mkdir()
    (tmp_path / "sub" / "deeper" / "d.yaml").write_text("- {name: d, labels: {d: '1'}}\n")
    (tmp_path / ".hidden.yaml").write_text("- {name: h, labels: {h: '1'}}\n")
    (tmp_path / "broken.yaml").write_text("- {name: x, matchFeatures: 5}\n")
    (tmp_path / "..data").mkdir()  # ConfigMap mounts have dot-dirs
    (tmp_path / "..data" / "e.yaml").write_text("- {name: e, labels: {e: '1'}}\n")
    names = [Path(p).name for p in rule_files(str(tmp_path))]
    assert names == ["a.yaml", "b.yaml", "broken.yaml", "c.yaml"]
    warnings: list[str] = []
    rules = load_rules_dir(str(tmp_path), warnings)
    assert [r.name for r in rules] == ["a", "b", "c"]
    assert len(warnings) == 1 and "broken.yaml" in warnings[0]
    ctx = SourceContext(
        HostFS("/"), {"rules": [], "rulesDir": str(tmp_path)}, features=host_features()
    )
    labels = SOURCE.labels(host_features(), ctx)
    assert labels["order"] == "b" and labels["a"] == "1" and labels["custom-c"] == "true"
    assert load_rules_dir(str(tmp_path / "missing")) == []


def test_source_identity() -> None:
    assert SOURCE.priority == 10 and SOURCE.prefix_labels is False
    assert SOURCE.default_config() == {
        "rules": [],
        "rulesDir": "/etc/kubernetes/node-feature-discovery/custom.d",
    }
    ctx = SourceContext(HostFS("/"), {"rules": [], "rulesDir": "/nonexistent"})
    assert SOURCE.labels(Features(), ctx) == {}


def test_changed_rule_files_are_reread(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- {name: one, labels: {v: '1'}}\n")
    assert [r.name for r in load_rules_dir(str(tmp_path))] == ["one"]
    path.write_text("- {name: second, labels: {v: '2'}}\n")
    assert [r.name for r in load_rules_dir(str(tmp_path))] == ["second"]
    path.unlink()
    assert load_rules_dir(str(tmp_path)) == []


KERNEL_FEATURE = {"feature": "kernel.version", "matchExpressions": {"major": {"op": "Exists"}}}
KERNEL_MATCH = "matchFeatures: [{feature: kernel.version, matchExpressions: {major: {op: Exists}}}]"


def test_a_failing_rule_is_logged_and_costs_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "r.yaml").write_text(
        "- {name: before, labels: {before: '1'}}\n"
        f"- {{name: broken, labelsTemplate: '{{{{ fail \"boom\" }}}}', {KERNEL_MATCH}}}\n"
        "- {name: after, labels: {after: '1'}}\n"
    )
    ctx = SourceContext(HostFS("/"), {"rules": [], "rulesDir": str(tmp_path)})
    with caplog.at_level(logging.WARNING, logger="nfd.sources.custom"):
        labels = SOURCE.labels(host_features(), ctx)
    assert labels["before"] == "1" and labels["after"] == "1"
    lines = [r.getMessage() for r in caplog.records if r.name == "nfd.sources.custom"]
    assert len(lines) == 1
    assert lines[0].startswith("custom: rule skipped: ") and "'broken'" in lines[0]
    assert "boom" in lines[0]


def test_rule_files_that_are_not_small_regular_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("- {name: a, labels: {a: '1'}}\n")
    os.mkfifo(tmp_path / "fifo.yaml")
    os.symlink("loop.yaml", tmp_path / "loop.yaml")
    os.symlink("/proc/self/mem", tmp_path / "mem.yaml")  # opens, but reading fails
    with open(tmp_path / "huge.yaml", "wb") as f:
        f.truncate(50 << 20)  # refused by its size: nothing is read or parsed
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("- {name: b, labels: {b: '1'}}\n")
    (tmp_path / "sub" / "dir.yaml").mkdir()  # a second-level directory is not descended
    warnings: list[str] = []
    rules = load_rules_dir(str(tmp_path), warnings)
    assert [r.name for r in rules] == ["a", "b"]
    prefix = f"custom: rule file skipped: {tmp_path}"
    assert sorted(warnings) == [
        f"{prefix}/fifo.yaml: a FIFO, not a regular file",
        f"{prefix}/huge.yaml: {50 << 20} bytes is over the 1048576 byte limit",
        f"{prefix}/loop.yaml: symlink loop (too many levels of symbolic links)",
        f"{prefix}/mem.yaml: cannot read: Input/output error",
    ]


# 41 templates, each calling the one below twice: 2^40 calls that emit nothing.
FAN_OUT = (
    '{{define "t0"}}{{end}}'
    + "".join(
        f'{{{{define "t{i}"}}}}{{{{template "t{i - 1}"}}}}{{{{template "t{i - 1}"}}}}{{{{end}}}}'
        for i in range(1, 41)
    )
    + '{{template "t40"}}'
)


def test_never_ending_template_in_custom_d_is_stopped_by_the_engine_budget(
    tmp_path: Path,
) -> None:
    """Needs the rules engine's default execution budget (the rules branch): without it
    the rule runs for ever, and the child below is killed at the timeout."""
    rules = [
        {"name": "before", "labels": {"before": "1"}},
        {"name": "fan-out", "labelsTemplate": FAN_OUT, "matchFeatures": [KERNEL_FEATURE]},
        {"name": "after", "labels": {"after": "1"}},
    ]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(rules))
    script = textwrap.dedent(
        f"""
        import json
        import logging
        from nfd.features import Features
        from nfd.hostfs import HostFS
        from nfd.sources import SourceContext
        from nfd.sources.custom import SOURCE
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
        features = Features()
        features.add_attributes("kernel.version", {{"major": "6"}})
        ctx = SourceContext(HostFS("/"), {{"rules": [], "rulesDir": {str(tmp_path)!r}}})
        print(json.dumps(SOURCE.labels(features, ctx)))
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the fan-out template ran for 30s: no execution budget in the engine")
    assert done.returncode == 0, done.stderr
    labels = json.loads(done.stdout)
    assert "before" in labels and "after" in labels
    assert "custom: rule skipped:" in done.stderr and "'fan-out'" in done.stderr


def test_rule_files_past_the_directory_budget_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nfd.sources.custom as custom

    monkeypatch.setattr(custom, "MAX_RULES_DIR_SIZE", 100)
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(f"- {{name: {name}, labels: {{{name}: '1'}}}}\n")
    warnings: list[str] = []
    # Each file is 30 bytes: a, b and c fit in 100; a fourth, bigger one does not.
    (tmp_path / "d.yaml").write_text("- {name: d, labels: {d: '1'}}\n" + "#" * 20 + "\n")
    assert [r.name for r in load_rules_dir(str(tmp_path), warnings)] == ["a", "b", "c"]
    assert warnings == [
        f"custom: rule file skipped: {tmp_path}/d.yaml: over the 100 bytes allowed for all "
        "rule files together"
    ]
