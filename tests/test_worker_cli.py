"""The worker's command line, run as real processes: nfd export and nfd-worker."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixture_paths import PCI_ROOTFS_1

BIN = Path(sys.executable).parent
ROOTFS_1 = f"{PCI_ROOTFS_1}/"
PCI_LABELS = {
    "feature.node.kubernetes.io/pci-0300_1a03.present": "true",
    "feature.node.kubernetes.io/pci-0b40_8086.present": "true",
    "feature.node.kubernetes.io/pci-0b40_8086.sriov.capable": "true",
}


@pytest.fixture
def empty_config(tmp_path) -> str:
    path = tmp_path / "nfd-worker.conf"
    path.write_text("# defaults only\n")
    return str(path)


def run(
    command: str, *args: str, env: dict | None = None, python_flags=()
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "NFD_HOST_PREFIX"}
    full_env["NODE_NAME"] = "cli-test-node"
    full_env.update(env or {})
    exe = BIN / command
    assert exe.exists(), f"{exe} missing: run `make install` (pip install -e .)"
    cmd = [sys.executable, *python_flags, str(exe), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=60)


def labels_of(proc: subprocess.CompletedProcess) -> dict[str, str]:
    assert proc.returncode == 0, proc.stderr
    # The worker prints one JSON object per label set; the last one is current.
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    text = proc.stdout if proc.stdout.lstrip().startswith("{\n") else lines[-1]
    return json.loads(text)


def export_labels(*args: str, **kw) -> subprocess.CompletedProcess:
    return run("nfd", "export", "labels", *args, **kw)


def worker_once(*args: str, **kw) -> subprocess.CompletedProcess:
    return run("nfd-worker", "--oneshot", "--no-publish", *args, **kw)


# -- nfd export -----------------------------------------------------------------------


def test_export_labels_prints_sorted_json(empty_config):
    proc = export_labels(
        "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-sources", "pci"
    )
    assert labels_of(proc) == PCI_LABELS
    assert proc.stdout == json.dumps(PCI_LABELS, indent=2, sort_keys=True) + "\n"


def test_export_features_has_upstream_shape(empty_config):
    proc = run(
        "nfd", "export", "features", "--host-prefix", ROOTFS_1, "--config", empty_config,
        "--feature-sources", "pci,system",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"flags", "attributes", "instances"}
    devices = doc["instances"]["pci.device"]["elements"]
    assert len(devices) == 10
    assert devices[7] == {
        "attributes": {
            "class": "0300",
            "device": "2000",
            "subsystem_device": "2000",
            "subsystem_vendor": "1a03",
            "vendor": "1a03",
        }
    }
    assert doc["attributes"]["system.name"] == {"elements": {"nodename": "cli-test-node"}}
    assert "memory.numa" not in doc["attributes"]  # not a selected feature source


def test_export_path_writes_a_file(empty_config, tmp_path):
    out = tmp_path / "labels.json"
    proc = export_labels(
        "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-sources", "pci",
        "--path", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(out.read_text()) == PCI_LABELS


def test_host_prefix_from_environment(empty_config):
    proc = export_labels(
        "--config", empty_config, "--label-sources", "pci", env={"NFD_HOST_PREFIX": ROOTFS_1}
    )
    assert labels_of(proc) == PCI_LABELS


# -- nfd-worker --oneshot --no-publish ------------------------------------------------


def test_worker_oneshot_no_publish_prints_labels_without_a_master(empty_config):
    proc = worker_once(
        "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-sources", "pci"
    )
    assert labels_of(proc) == PCI_LABELS


def test_worker_does_not_import_kubernetes(empty_config):
    proc = worker_once(
        "--host-prefix", ROOTFS_1, "--config", empty_config, python_flags=("-X", "importtime")
    )
    assert proc.returncode == 0, proc.stderr
    imported = re.findall(r"\|\s+(\S+)$", proc.stderr, re.MULTILINE)
    assert imported, "no -X importtime output"
    assert not [m for m in imported if m.split(".")[0] == "kubernetes"]


def test_config_file_options_reach_the_sources(tmp_path):
    config = tmp_path / "nfd-worker.conf"
    config.write_text("sources:\n  pci:\n    deviceLabelFields: [vendor]\n")
    proc = worker_once("--host-prefix", ROOTFS_1, "--config", str(config), "--label-sources", "pci")
    assert labels_of(proc) == {
        "feature.node.kubernetes.io/pci-1a03.present": "true",
        "feature.node.kubernetes.io/pci-8086.present": "true",
        "feature.node.kubernetes.io/pci-8086.sriov.capable": "true",
    }


# -- broken and odd configs -------------------------------------------------------------


@pytest.mark.parametrize("command", ["nfd-worker", "nfd"])
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("core:\n  labelSources: [pci\n  noPublish: true\n", None),
        ("core:\n  labelSources: [pci]\n  sleepInterval: soon\n", 3),
        ("sources:\n  pci:\n    deviceLabelFields: [vendor]\ncore:\n  noPublish: 3\n", 5),
    ],
)
def test_broken_config_is_a_clear_error_and_nothing_runs(tmp_path, command, text, line):
    config = tmp_path / "broken.conf"
    config.write_text(text)
    args = ["--host-prefix", ROOTFS_1, "--config", str(config)]
    if command == "nfd":
        proc = run("nfd", "export", "labels", *args)
    else:
        proc = run("nfd-worker", "--oneshot", "--no-publish", *args)
    assert proc.returncode != 0
    assert proc.stdout == ""  # no labels from half a config
    line_pattern = str(line) if line else r"\d+"
    pattern = re.escape(str(config)) + ":" + line_pattern + ":"
    assert re.search(pattern, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_named_config_is_an_error(tmp_path):
    proc = worker_once("--host-prefix", ROOTFS_1, "--config", str(tmp_path / "nope.conf"))
    assert proc.returncode != 0
    assert "nope.conf: no such file" in proc.stderr


def test_unknown_keys_warn_and_the_run_goes_on(tmp_path):
    config = tmp_path / "w.conf"
    config.write_text(
        "core:\n  labelSources: [pci]\n  shinyNewOption: 1\nsources:\n  pci:\n    colour: red\n"
    )
    proc = worker_once("--host-prefix", ROOTFS_1, "--config", str(config))
    assert labels_of(proc) == PCI_LABELS
    assert f"{config}:3: core.shinyNewOption: unknown option" in proc.stderr
    assert f"{config}:6: sources.pci.colour: unknown option" in proc.stderr


# -- whitelist and source selection -------------------------------------------------------


def test_label_whitelist_flag(empty_config):
    proc = worker_once(
        "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-sources", "pci",
        "--label-whitelist", r"^pci-0b40_.*\.present$",
    )  # fmt: skip
    assert labels_of(proc) == {"feature.node.kubernetes.io/pci-0b40_8086.present": "true"}


def test_label_whitelist_from_config(tmp_path):
    config = tmp_path / "w.conf"
    config.write_text("core:\n  labelWhiteList: '1a03'\n  labelSources: [pci]\n")
    proc = export_labels("--host-prefix", ROOTFS_1, "--config", str(config))
    assert labels_of(proc) == {"feature.node.kubernetes.io/pci-0300_1a03.present": "true"}


def test_whitelist_matches_the_name_part_only(empty_config):
    # The namespace is not part of what the whitelist sees.
    proc = export_labels(
        "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-sources", "pci",
        "--label-whitelist", "^feature",
    )  # fmt: skip
    assert labels_of(proc) == {}


def test_invalid_whitelist_is_an_error(empty_config):
    proc = worker_once(
        "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-whitelist", "(oops"
    )
    assert proc.returncode != 0
    assert "--label-whitelist" in proc.stderr
    assert proc.stdout == ""


def test_minus_name_removes_a_label_source(empty_config):
    with_pci = labels_of(export_labels("--host-prefix", ROOTFS_1, "--config", empty_config))
    without = labels_of(
        export_labels(
            "--host-prefix", ROOTFS_1, "--config", empty_config, "--label-sources", "all,-pci"
        )
    )
    assert PCI_LABELS.items() <= with_pci.items()
    assert not [k for k in without if "/pci-" in k]
    assert {k: v for k, v in with_pci.items() if k not in PCI_LABELS} == without


def test_minus_name_removes_a_feature_source(empty_config):
    proc = run(
        "nfd", "export", "features", "--host-prefix", ROOTFS_1, "--config", empty_config,
        "--feature-sources", "all,-pci",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pci.device" not in json.loads(proc.stdout)["instances"]
    labels = labels_of(
        export_labels(
            "--host-prefix", ROOTFS_1, "--config", empty_config, "--feature-sources", "all,-pci"
        )
    )
    assert not [k for k in labels if "/pci-" in k]


def test_feature_sources_from_config(tmp_path):
    config = tmp_path / "w.conf"
    config.write_text("core:\n  featureSources: [all, -pci]\n  labelSources: [pci]\n")
    assert labels_of(export_labels("--host-prefix", ROOTFS_1, "--config", str(config))) == {}


def test_a_failing_source_costs_only_itself(empty_config):
    # rootfs-1 has no sys/class/net or sys/block: those sources fail, pci still labels.
    proc = export_labels(
        "--host-prefix", ROOTFS_1, "--config", empty_config,
        "--label-sources", "pci,network,storage",
    )  # fmt: skip
    assert labels_of(proc) == PCI_LABELS
    assert "source network" in proc.stderr and "sys/class/net" in proc.stderr
    assert "source storage" in proc.stderr and "sys/block" in proc.stderr


def test_no_publish_from_config(tmp_path):
    config = tmp_path / "w.conf"
    config.write_text("core:\n  noPublish: true\n  labelSources: [pci]\n")
    proc = run("nfd-worker", "--oneshot", "--host-prefix", ROOTFS_1, "--config", str(config))
    assert labels_of(proc) == PCI_LABELS
