"""What a oneshot worker imports: only what discovery needs (docs/startup.md).

Start-up is most of a oneshot worker's time and Python spends it importing, so
the modules below stay out of ``nfd-worker --oneshot --no-publish`` with the
shipped (all-comments) config. Each is loaded where it is needed instead: YAML
for a config with content, RE2 for a regular expression, subprocess for hooks,
logging for the first record, grpc for publishing. The list is read from the
real process with ``python -X importtime``, so it holds for the installed
entry point, not just for an import in this test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden import TREES

BIN = Path(sys.executable).parent
SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "base" / "worker-config.yaml"

# Each of these cost a millisecond or more at start-up (measured, docs/startup.md).
KEPT_OUT = {
    "argparse": "the worker parses its flags with nfd.cli.flags",
    "copy": "config defaults are copied by nfd.worker.config.deep_copy",
    "dataclasses": "imports inspect; the worker's classes are plain",
    "datetime": "only for an expiry-time directive in a feature file",
    "gettext": "argparse's",
    "grpc": "only to publish",
    "inspect": "dataclasses'",
    "json": "imports re; labels are written with the C escaper _json",
    "kubernetes": "never in the worker",
    "logging": "nfd.log loads it with the first record",
    "pathlib": "HostFS paths are strings",
    "re": "string methods; re is imported where a regex is genuinely needed",
    "re2": "only for a regular expression in a rule or the label whitelist",
    "selectors": "hooks only",
    "subprocess": "hooks only",
    "textwrap": "--help only",
    "threading": "the daemon's, not oneshot's",
    "typing": "annotations only (TYPE_CHECKING)",
    "yaml": "only for a config file with content",
    "google": "protobuf: only to publish",
    "prometheus_client": "only with --metrics",
    "pyudev": "only for the event-driven daemon",
}


def imported_modules(stderr: str) -> set[str]:
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def shipped_config(tmp_path: Path) -> str:
    """The nfd-worker.conf of deploy/base, as the ConfigMap mounts it."""
    import yaml

    doc = yaml.safe_load(SHIPPED_CONFIG.read_text())
    path = tmp_path / "nfd-worker.conf"
    path.write_text(doc["data"]["nfd-worker.conf"])
    return str(path)


def oneshot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env["NODE_NAME"] = "startup-test"
    argv = [sys.executable, "-X", "importtime", str(BIN / "nfd-worker")]
    argv += ["--oneshot", "--no-publish", "--metrics=0", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def assert_lean(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)  # real labels came out
    loaded = {name.split(".")[0] for name in imported_modules(proc.stderr)}
    unwanted = {name: why for name, why in KEPT_OUT.items() if name in loaded}
    assert not unwanted, f"the oneshot worker imported {sorted(unwanted)}: {unwanted}"


def test_shipped_config_is_comments_only_and_needs_no_yaml(tmp_path):
    assert_lean(oneshot(f"--config={shipped_config(tmp_path)}"))


@pytest.mark.parametrize("tree", ["host-full", "gpu-datacenter", "cpu-only"])
def test_fixture_trees(tmp_path, tree):
    empty = tmp_path / "empty.d"
    empty.mkdir()
    proc = oneshot(
        f"--config={shipped_config(tmp_path)}",
        f"--host-prefix={TREES[tree]}/",
        f"--features-dir={empty}",
        f"--hooks-dir={empty}",
    )
    assert_lean(proc)


def test_a_config_with_content_loads_yaml_and_only_that(tmp_path):
    config = tmp_path / "nfd-worker.conf"
    config.write_text("sources:\n  cpu:\n    cpuid:\n      attributeBlacklist: [SSE]\n")
    proc = oneshot(f"--config={config}")
    assert proc.returncode == 0, proc.stderr
    loaded = {name.split(".")[0] for name in imported_modules(proc.stderr)}
    assert "yaml" in loaded
    assert not loaded & {"logging", "dataclasses", "typing", "re2", "subprocess", "argparse"}


def test_a_warning_loads_logging_and_is_printed(tmp_path):
    config = tmp_path / "nfd-worker.conf"
    config.write_text("core:\n  noSuchOption: 1\n")
    proc = oneshot(f"--config={config}")
    assert proc.returncode == 0, proc.stderr
    assert "core.noSuchOption: unknown option, ignored" in proc.stderr
    assert "logging" in imported_modules(proc.stderr)
