"""What ``nfd export``, ``nfd-worker --oneshot --no-publish`` and ``nfd dryrun`` print.

Piped, each prints exactly the JSON it always printed (pinned here and, for
``nfd export``, in tests/golden); scripts that parse it keep working. The
golden files tests/golden/worker-oneshot.json and
dryrun-nodefeaturerule-1.json were captured from the commands before
human-readable output existed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixture_paths import UPSTREAM_E2E_DATA
from tests.golden import CONFIG, HERE, NODE_NAME, TREES

BIN = Path(sys.executable).parent
WORKER_ONESHOT = HERE / "worker-oneshot.json"
DRYRUN = HERE / "dryrun-nodefeaturerule-1.json"
TREE = TREES["host-full"]
NFD_DIR = TREE / "etc" / "kubernetes" / "node-feature-discovery"
DISCOVERY_ARGS = (
    "--host-prefix", f"{TREE}/",
    "--config", str(CONFIG),
    "--features-dir", str(NFD_DIR / "features.d"),
    "--hooks-dir", str(NFD_DIR / "source.d"),
    "--rules-dir", str(NFD_DIR / "custom.d"),
)  # fmt: skip
DRYRUN_ARGS = (
    "--rule", str(UPSTREAM_E2E_DATA / "nodefeaturerule-1.yaml"),
    "--features", str(UPSTREAM_E2E_DATA / "nodefeature-1.yaml"),
)  # fmt: skip


def command(name: str, *args: str) -> list[str]:
    return [sys.executable, str(BIN / name), *args]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFD_")}
    env.pop("NO_COLOR", None)
    env["NODE_NAME"] = NODE_NAME
    env.update(extra)
    return env


def piped(cmd: list[str]) -> bytes:
    """stdout of ``cmd`` through a pipe, as bytes; the command must succeed."""
    proc = subprocess.run(cmd, capture_output=True, env=environment(), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


# -- piped: the JSON of before, byte for byte ------------------------------------------


def test_piped_export_labels_is_the_golden_json():
    out = piped(command("nfd", "export", "labels", *DISCOVERY_ARGS))
    assert out == (HERE / "host-full" / "labels.json").read_bytes()


def test_piped_export_features_is_the_golden_json():
    out = piped(command("nfd", "export", "features", *DISCOVERY_ARGS))
    assert out == (HERE / "host-full" / "features.json").read_bytes()


def test_piped_worker_oneshot_is_one_json_line():
    out = piped(command("nfd-worker", "--oneshot", "--no-publish", *DISCOVERY_ARGS))
    assert out == (WORKER_ONESHOT).read_bytes()
    assert out.count(b"\n") == 1


def test_piped_dryrun_is_the_golden_json():
    out = piped(command("nfd", "dryrun", *DRYRUN_ARGS))
    assert out == (DRYRUN).read_bytes()
