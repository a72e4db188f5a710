"""What ``nfd export``, ``nfd-worker --oneshot --no-publish`` and ``nfd dryrun`` print.

On a terminal (here a pseudo-terminal) labels print as a sorted NAME/VALUE
table, features as YAML, dryrun's result as a table per part. Piped, each
prints exactly the JSON it always printed (pinned here and, for ``nfd export``,
in tests/golden); scripts that parse it keep working. The golden files
tests/golden/worker-oneshot.json and dryrun-nodefeaturerule-1.json were
captured from the commands before human-readable output existed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.fixture_paths import UPSTREAM_E2E_DATA
from tests.golden import CONFIG, HERE, NODE_NAME, TREES
from tests.terminal import run_in_terminal

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


def golden_labels() -> dict[str, str]:
    return json.loads((HERE / "host-full" / "labels.json").read_text())


def assert_labels_table(text: str, labels: dict[str, str]) -> None:
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "VALUE"]
    value_column = lines[0].index("VALUE")
    rows = [(line[:value_column].rstrip(), line[value_column:]) for line in lines[1:]]
    assert rows == sorted(labels.items())
    # Aligned: every value starts in the VALUE column, two blanks after the longest name.
    assert value_column == max(len(k) for k in labels) + 2
    assert all(line[value_column - 1] == " " for line in lines[1:])


def in_terminal(cmd: list[str]) -> str:
    return run_in_terminal(cmd, environment())


def test_terminal_export_labels_is_a_sorted_aligned_table():
    text = in_terminal(command("nfd", "export", "labels", *DISCOVERY_ARGS))
    assert_labels_table(text, golden_labels())


def test_terminal_worker_oneshot_is_the_same_table():
    text = in_terminal(command("nfd-worker", "--oneshot", "--no-publish", *DISCOVERY_ARGS))
    assert_labels_table(text, golden_labels())


def test_terminal_export_features_is_yaml_of_the_same_document():
    text = in_terminal(command("nfd", "export", "features", *DISCOVERY_ARGS))
    assert not text.lstrip().startswith("{")
    golden = json.loads((HERE / "host-full" / "features.json").read_text())
    assert yaml.safe_load(text) == golden


def test_terminal_with_output_json_is_the_piped_bytes():
    for cmd, golden in (
        (command("nfd", "export", "labels", "-o", "json", *DISCOVERY_ARGS),
         HERE / "host-full" / "labels.json"),
        (command("nfd-worker", "-oneshot", "-no-publish", "-output=json", *DISCOVERY_ARGS),
         WORKER_ONESHOT),
        (command("nfd", "dryrun", "--output", "json", *DRYRUN_ARGS), DRYRUN),
    ):  # fmt: skip
        assert in_terminal(cmd) == golden.read_text(), cmd


def test_piped_with_output_table_and_yaml():
    out = piped(command("nfd", "export", "labels", "-o", "table", *DISCOVERY_ARGS))
    assert_labels_table(out.decode(), golden_labels())
    out = piped(command("nfd-worker", "--oneshot", "--no-publish", "-o", "yaml", *DISCOVERY_ARGS))
    assert yaml.safe_load(out) == golden_labels()


def test_terminal_dryrun_is_a_table_per_part():
    text = in_terminal(command("nfd", "dryrun", *DRYRUN_ARGS))
    assert text == (
        "Labels (2):\n"
        "  NAME                  VALUE\n"
        "  e2e-attribute-test-2  true\n"
        "  e2e-instance-test-2   true\n"
        "\n"
        "Annotations (0):\n"
        "  none\n"
        "\n"
        "Taints (0):\n"
        "  none\n"
        "\n"
        "Extended resources (0):\n"
        "  none\n"
    )


def test_terminal_features_table(tmp_path):
    text = in_terminal(command("nfd", "export", "features", "-o", "table", *DISCOVERY_ARGS))
    lines = text.splitlines()
    assert lines[0].split() == ["FEATURE", "TYPE", "ELEMENT", "VALUE"]
    golden = json.loads((HERE / "host-full" / "features.json").read_text())
    flags = sum(len(v["elements"]) for v in golden["flags"].values())
    attrs = sum(len(v["elements"]) for v in golden["attributes"].values())
    insts = sum(len(v["elements"]) for v in golden["instances"].values())
    assert len(lines) == 1 + flags + attrs + insts
    assert any(line.split()[:2] == ["cpu.cpuid", "flag"] for line in lines)


def test_export_to_path_stays_json_on_a_terminal(tmp_path):
    path = tmp_path / "labels.json"
    assert (
        in_terminal(command("nfd", "export", "labels", "--path", str(path), *DISCOVERY_ARGS)) == ""
    )
    assert path.read_bytes() == (HERE / "host-full" / "labels.json").read_bytes()


def test_unknown_output_format_is_a_usage_error():
    proc = subprocess.run(
        command("nfd", "export", "labels", "-o", "xml", *DISCOVERY_ARGS),
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "invalid choice: 'xml'" in proc.stderr


def test_worker_output_flag_needs_oneshot_no_publish():
    proc = subprocess.run(
        command("nfd-worker", "--no-publish", "-o", "table", *DISCOVERY_ARGS),
        capture_output=True, text=True, env=environment(), timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--output applies to --oneshot --no-publish only" in proc.stderr
