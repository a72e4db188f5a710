"""``kubectl nfd nodes`` against a real kube-apiserver, as a real process (and as a kubectl
plugin found on PATH), piped and in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kube.controlplane import ControlPlane
from tests.terminal import run_in_terminal

BIN = Path(sys.executable).parent
NS = "feature.node.kubernetes.io"
CPUID = f"{NS}/cpu-cpuid."
FLAGS = (
    "ADX AESNI AMXBF16 AMXINT8 AMXTILE AVX AVX2 AVX512BF16 AVX512BITALG AVX512BW AVX512CD "
    "AVX512DQ AVX512F AVX512FP16 AVX512IFMA AVX512VBMI AVX512VBMI2 AVX512VL AVX512VNNI "
    "AVX512VP2INTERSECT AVX512VPOPCNTDQ AVXVNNI CETIBT CETSS FMA3 GFNI SHA VAES VPCLMULQDQ"
).split()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane) -> Iterator[tuple[ControlPlane, str, list[str]]]:
    """Three nodes marked with a run label: all flags, half of them, none."""
    run = secrets.token_hex(3)
    names = [f"nodes-{run}-big", f"nodes-{run}-half", f"nodes-{run}-plain"]
    common = {"nfd-test/run": run}
    control_plane.register_node(
        names[0],
        {
            **common,
            **{CPUID + f: "true" for f in FLAGS},
            f"{NS}/cpu-model.vendor_id": "Intel",
            f"{NS}/pci-10de.present": "true",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        },
    )
    control_plane.register_node(
        names[1],
        {**common, **{CPUID + f: "true" for f in FLAGS[::2]}, f"{NS}/cpu-model.vendor_id": "AMD"},
    )
    control_plane.register_node(names[2], common)
    try:
        yield control_plane, run, names
    finally:
        for name in names:
            control_plane.delete_node(name, wait=False)


def environment(tmp_home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KUBECONFIG", "NO_COLOR", "COLUMNS", "LINES", "TERM")
        and not k.startswith("KUBERNETES_")
    }
    env["HOME"] = str(tmp_home)  # no ~/.kube/config of the machine's user
    env.update(extra)
    return env


def nodes_cmd(*args: str) -> list[str]:
    return [sys.executable, str(BIN / "kubectl-nfd"), "nodes", *args]


def piped(cluster, tmp_path, *args: str, **env: str) -> str:
    plane, run, _ = cluster
    proc = subprocess.run(
        nodes_cmd("-l", f"nfd-test/run={run}", *args),
        capture_output=True,
        text=True,
        env=environment(tmp_path, KUBECONFIG=str(plane.kubeconfig), **env),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_glob_table_drops_the_common_prefix_and_fits_80_columns(cluster, tmp_path):
    _, _, names = cluster
    text = piped(cluster, tmp_path, f"{CPUID}*")
    lines = text.splitlines()
    assert lines[0] == f"Labels: {CPUID}<COLUMN>"
    assert max(len(line) for line in lines) <= 80
    assert "\x1b[" not in text  # no colour through a pipe
    # Blocks of columns, each led by NODE, together hold every flag once.
    blocks = [b.splitlines() for b in text.split("\n\n")]
    blocks[0] = blocks[0][1:]
    headers = [h for block in blocks for h in block[0].split()[1:]]
    assert headers == sorted(FLAGS)
    assert len(blocks) > 1
    for block in blocks:
        assert block[0].split()[0] == "NODE"
        assert [row.split()[0] for row in block[1:]] == sorted(names[:2]) + [names[2]]
    # Cells sit under their headers: node "half" has every other flag.
    first = blocks[0]
    for flag in first[0].split()[1:]:
        col = first[0].index(flag)
        half_cell = first[2][col:].split()[0]
        assert half_cell == ("true" if flag in FLAGS[::2] else "-"), flag
        assert first[3][col:].split()[0] == "-"


def test_label_list_and_selector(cluster, tmp_path):
    _, run, names = cluster
    text = piped(
        cluster,
        tmp_path,
        "-L",
        f"{NS}/cpu-model.vendor_id,nvidia.com/gpu.product",
        "-l",
        f"{NS}/cpu-model.vendor_id",
    )
    w = max(len(names[0]), len(names[1]))
    assert text.splitlines() == [
        f"Labels: {NS}/<COLUMN> where COLUMN has no '/'",
        f"{'NODE':{w}}  cpu-model.vendor_id  nvidia.com/gpu.product",
        f"{names[0]:{w}}  Intel                NVIDIA-H100-80GB-HBM3",
        f"{names[1]:{w}}  AMD                  -",
    ]


def test_default_counts_nfd_labels(cluster, tmp_path):
    _, _, names = cluster
    rows = [line.split() for line in piped(cluster, tmp_path).splitlines()]
    assert rows == [
        ["NODE", "NFD", "LABELS"],
        [names[0], str(len(FLAGS) + 2)],
        [names[1], str(len(FLAGS[::2]) + 1)],
        [names[2], "0"],
    ]


def test_wide_keeps_full_names_in_one_block(cluster, tmp_path):
    text = piped(cluster, tmp_path, "-o", "wide", f"{CPUID}AVX512*")
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].split() == ["NODE", *sorted(CPUID + f for f in FLAGS if "AVX512" in f)]


def test_json_and_yaml(cluster, tmp_path):
    _, _, names = cluster
    expected = [
        {"name": names[0], "labels": {f"{NS}/cpu-model.vendor_id": "Intel"}},
        {"name": names[1], "labels": {f"{NS}/cpu-model.vendor_id": "AMD"}},
        {"name": names[2], "labels": {}},
    ]
    assert json.loads(piped(cluster, tmp_path, "-o", "json", f"{NS}/cpu-model.*")) == expected
    assert yaml.safe_load(piped(cluster, tmp_path, "-o", "yaml", f"{NS}/cpu-model.*")) == expected


def test_colour_on_a_terminal_only_and_not_with_no_color(cluster, tmp_path):
    plane, run, _ = cluster
    args = nodes_cmd("-l", f"nfd-test/run={run}", f"{CPUID}*")
    env = environment(tmp_path, KUBECONFIG=str(plane.kubeconfig), TERM="xterm")
    coloured = run_in_terminal(args, env, columns=120)
    assert "\x1b[32mtrue\x1b[0m" in coloured and "\x1b[1mNODE\x1b[0m" in coloured
    # The terminal's width is used; colour codes take no room.
    plain = ANSI.sub("", coloured)
    assert max(len(line) for line in plain.splitlines()) <= 120
    assert max(len(line) for line in plain.splitlines()) > 80
    no_colour = run_in_terminal(args, {**env, "NO_COLOR": "1"}, columns=120)
    assert no_colour == plain


def test_as_a_kubectl_plugin_with_kubeconfig_flag(cluster, tmp_path):
    plane, run, names = cluster
    env = environment(tmp_path, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [str(plane.binaries.kubectl), "nfd", "nodes", f"--kubeconfig={plane.kubeconfig}",
         "-l", f"nfd-test/run={run}", "-o", "json", "nvidia.com/*"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [n["labels"] for n in json.loads(proc.stdout)] == [
        {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        {},
        {},
    ]


def test_no_cluster_configuration_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        nodes_cmd(), capture_output=True, text=True, env=environment(tmp_path), timeout=60
    )
    assert proc.returncode == 1
    assert "kubectl nfd nodes: no usable cluster configuration" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_api_server_is_a_clear_error(cluster, tmp_path):
    plane, _, _ = cluster
    config = yaml.safe_load(plane.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        nodes_cmd("--kubeconfig", str(path)),
        capture_output=True, text=True, env=environment(tmp_path), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    assert "kubectl nfd nodes: cannot reach the API server" in proc.stderr
    assert "Traceback" not in proc.stderr
