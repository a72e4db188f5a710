"""custom source: built-in, nfd-worker.conf and custom.d rules, in upstream's order."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

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
