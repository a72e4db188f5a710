"""The gpu source on the fixture trees, its helpers, and the pci.ids lookup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfd.features import Features
from nfd.gpu.devices import (
    gpu_mode,
    is_nvidia_gpu,
    parse_driver_version,
    parse_information,
    pci_class,
    sanitise_label_value,
)
from nfd.gpu.pciids import find_pci_ids, lookup_device_names
from nfd.hostfs import HostFS
from nfd.labels import is_valid_value
from nfd.sources import SourceContext, get_source, select_sources
from nfd.sources.gpu import discover_gpus, gpu_labels

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DATACENTER = FIXTURES / "gpu-datacenter"
CONSUMER = FIXTURES / "gpu-consumer"
CPU_ONLY = FIXTURES / "cpu-only"
HOST_FULL = FIXTURES / "host-full"
REPO = Path(__file__).resolve().parents[2]
# The installed console script, next to the interpreter running the tests.
NFD = str(Path(sys.executable).parent / "nfd")


def run_source(root: Path) -> tuple[Features, dict[str, str]]:
    source = get_source("gpu")
    ctx = SourceContext(HostFS(str(root)))
    features = source.discover(ctx)
    return features, source.labels(features, ctx)


# ------------------------------------------------------------------ fixture hosts


def test_datacenter_node() -> None:
    features, labels = run_source(DATACENTER)
    assert labels == {
        "nvidia.com/gpu.count": "8",  # 8 PFs: 4 VFs, 4 NVSwitches, the ASPEED VGA left out
        "nvidia.com/gpu.mode": "compute",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",  # the driver's Model: line
        # From the device-id table (10de:2330, GH100 [H100 SXM5 80GB]), spelled as GFD.
        "nvidia.com/gpu.family": "hopper",
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.compute.minor": "0",
        "nvidia.com/gpu.memory": "81559",
        "nvidia.com/mig.capable": "true",
        "nvidia.com/gpu.machine": "DGX-H100",
        "nvidia.com/cuda.driver.major": "535",
        "nvidia.com/cuda.driver.minor": "129",
        "nvidia.com/cuda.driver.rev": "03",
        "nvidia.com/cuda.driver-version.major": "535",
        "nvidia.com/cuda.driver-version.minor": "129",
        "nvidia.com/cuda.driver-version.revision": "03",
        "nvidia.com/cuda.driver-version.full": "535.129.03",
    }
    gpus = features.instances["gpu.device"]
    assert [g["address"] for g in gpus] == [
        "0000:1b:00.0",
        "0000:43:00.0",
        "0000:52:00.0",
        "0000:61:00.0",
        "0000:9d:00.0",
        "0000:c3:00.0",
        "0000:d1:00.0",
        "0000:df:00.0",
    ]
    assert gpus[0] == {
        "address": "0000:1b:00.0",
        "class": "0302",
        "vendor": "10de",
        "device": "2330",
        "subsystem_vendor": "10de",
        "subsystem_device": "16c1",
        "numa_node": "0",
        "driver": "nvidia",
        "sriov_totalvfs": "32",
        "sriov_numvfs": "4",
        "current_link_speed": "32.0 GT/s PCIe",
        "current_link_width": "16",
        "max_link_speed": "32.0 GT/s PCIe",
        "max_link_width": "16",
        "model": "NVIDIA H100 80GB HBM3",
    }
    assert [g["numa_node"] for g in gpus] == ["0"] * 4 + ["1"] * 4
    assert all(g["sriov_numvfs"] == "0" for g in gpus[1:])
    # The driver named every GPU, so pci.ids was not needed.
    assert all("name" not in g for g in gpus)
    assert features.attributes["gpu.driver"] == {
        "version": "535.129.03",
        "major": "535",
        "minor": "129",
        "rev": "03",
    }
    assert features.attributes["gpu.machine"] == {"product_name": "DGX H100"}


def test_consumer_node_without_driver_uses_pci_ids() -> None:
    features, labels = run_source(CONSUMER)
    assert labels == {
        "nvidia.com/gpu.count": "1",  # the audio function 10de:22ba (class 0403) is no GPU
        "nvidia.com/gpu.mode": "graphics",
        "nvidia.com/gpu.product": "AD102-GeForce-RTX-4090",
        "nvidia.com/gpu.family": "ada-lovelace",
        "nvidia.com/gpu.compute.major": "8",
        "nvidia.com/gpu.compute.minor": "9",
        # No gpu.memory: GDDR6X, NVML's total depends on the ECC mode.
        "nvidia.com/mig.capable": "false",
        "nvidia.com/gpu.machine": "Z790-AORUS-ELITE-AX",
    }
    (gpu,) = features.instances["gpu.device"]
    assert gpu["driver"] == "nouveau"
    assert gpu["name"] == "AD102 [GeForce RTX 4090]"
    assert gpu["numa_node"] == "-1"
    assert "model" not in gpu and "sriov_totalvfs" not in gpu
    assert "gpu.driver" not in features.attributes


def test_host_full_node_a100_pcie_without_driver() -> None:
    """tests/fixtures/host-full: one A100 PCIe 80GB (10de:20b5), no driver, no pci.ids."""
    features, labels = run_source(HOST_FULL)
    assert labels == {
        "nvidia.com/gpu.count": "1",
        "nvidia.com/gpu.mode": "compute",
        "nvidia.com/gpu.family": "ampere",
        "nvidia.com/gpu.compute.major": "8",
        "nvidia.com/gpu.compute.minor": "0",
        # No published NVML reading for the PCIe card: no gpu.memory rather than a guess.
        "nvidia.com/mig.capable": "true",
        "nvidia.com/gpu.machine": "SYS-120U-TNR",
    }
    (gpu,) = features.instances["gpu.device"]
    assert gpu["device"] == "20b5"


def test_shared_fixtures_have_no_nvidia_gpu() -> None:
    """../shared/fixtures holds no NVIDIA function (checked, so a new tree is noticed)."""
    shared = REPO.parent / "shared" / "fixtures"
    if not shared.is_dir():
        shared = Path("/work/shared/fixtures")
    if not shared.is_dir():
        pytest.skip("no shared fixtures on this machine")
    vendors = [p for p in shared.rglob("vendor") if p.is_file()]
    assert not [p for p in vendors if p.read_text(errors="replace").strip() == "0x10de"]


def test_cpu_only_node_has_no_gpu_features_or_labels() -> None:
    features, labels = run_source(CPU_ONLY)
    assert features.is_empty()
    assert labels == {}


def test_gpu_source_is_enabled_by_default() -> None:
    assert "gpu" in select_sources(["all"])


@pytest.fixture
def datacenter_copy(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    shutil.copytree(DATACENTER, root, symlinks=True)
    return root


def test_vf_without_its_pf_is_still_not_a_gpu(datacenter_copy: Path) -> None:
    shutil.rmtree(datacenter_copy / "sys/bus/pci/devices/0000:1b:00.0")
    gpus = discover_gpus(HostFS(str(datacenter_copy)))
    assert len(gpus) == 7
    assert "0000:1b:00.4" not in {g["address"] for g in gpus}


def test_unreadable_and_odd_devices_are_skipped(datacenter_copy: Path) -> None:
    devices = datacenter_copy / "sys/bus/pci/devices"
    (devices / "0000:43:00.0/vendor").unlink()  # vanished mid-scan (hot unplug)
    (devices / "0000:52:00.0/class").write_text("garbage\n")
    (devices / "0000:61:00.0/driver").unlink()
    (devices / "stray-file").write_text("x")
    gpus = discover_gpus(HostFS(str(datacenter_copy)))
    assert [g["address"] for g in gpus] == [
        "0000:1b:00.0",
        "0000:61:00.0",
        "0000:9d:00.0",
        "0000:c3:00.0",
        "0000:d1:00.0",
        "0000:df:00.0",
    ]
    assert "driver" not in gpus[1]


def test_driver_unloaded_falls_back_to_pci_ids(datacenter_copy: Path) -> None:
    shutil.rmtree(datacenter_copy / "proc/driver/nvidia")
    shutil.rmtree(datacenter_copy / "sys/module/nvidia")
    features, labels = run_source(datacenter_copy)
    assert labels["nvidia.com/gpu.product"] == "GH100-H100-SXM5-80GB"
    assert not any(k.startswith("nvidia.com/cuda.") for k in labels)


def test_proc_version_is_used_when_sysfs_lacks_it(datacenter_copy: Path) -> None:
    (datacenter_copy / "sys/module/nvidia/version").unlink()
    _, labels = run_source(datacenter_copy)
    assert labels["nvidia.com/cuda.driver-version.full"] == "535.129.03"


def test_no_pci_ids_and_no_driver_gives_no_product(tmp_path: Path) -> None:
    root = tmp_path / "host"
    shutil.copytree(CONSUMER, root, symlinks=True)
    (root / "usr/share/misc/pci.ids").unlink()
    (root / "sys/devices/virtual/dmi/id/product_name").unlink()
    _, labels = run_source(root)
    assert "nvidia.com/gpu.product" not in labels
    assert labels["nvidia.com/gpu.machine"] == "unknown"  # GFD's value
    assert labels["nvidia.com/gpu.count"] == "1"


def test_pci_ids_locations_in_order(tmp_path: Path) -> None:
    host = HostFS(str(tmp_path))
    assert find_pci_ids(host) is None
    (tmp_path / "usr/share").mkdir(parents=True)
    (tmp_path / "usr/share/pci.ids").write_text("")
    assert find_pci_ids(host) == "usr/share/pci.ids"
    (tmp_path / "usr/share/hwdata").mkdir()
    (tmp_path / "usr/share/hwdata/pci.ids").write_text("")
    assert find_pci_ids(host) == "usr/share/hwdata/pci.ids"
    assert find_pci_ids(HostFS(str(CPU_ONLY))) == "usr/share/hwdata/pci.ids"
    assert find_pci_ids(HostFS(str(CONSUMER))) == "usr/share/misc/pci.ids"


def test_mixed_models_label_the_first_gpu_and_unknown_mode() -> None:
    features = Features()
    features.add_instances(
        "gpu.device",
        [
            {"address": "0000:01:00.0", "class": "0300", "name": "AD102 [GeForce RTX 4090]"},
            {"address": "0000:02:00.0", "class": "0302", "model": "Tesla T4"},
        ],
    )
    labels = gpu_labels(features)
    assert labels["nvidia.com/gpu.mode"] == "unknown"
    assert labels["nvidia.com/gpu.product"] == "AD102-GeForce-RTX-4090"
    assert labels["nvidia.com/gpu.count"] == "2"
    # No device ids: the table cannot tell, so no architecture labels at all.
    assert not any(k in labels for k in ("nvidia.com/gpu.family", "nvidia.com/mig.capable"))


def test_mixed_models_describe_the_first_gpu_and_any_mig_capable() -> None:
    features = Features()
    features.add_instances(
        "gpu.device",
        [
            {"address": "0000:01:00.0", "class": "0302", "device": "1eb8", "model": "Tesla T4"},
            {"address": "0000:02:00.0", "class": "0302", "device": "2330", "model": "H100"},
        ],
    )
    labels = gpu_labels(features)
    assert labels["nvidia.com/gpu.product"] == "Tesla-T4"
    assert labels["nvidia.com/gpu.family"] == "turing"
    assert labels["nvidia.com/gpu.compute.major"] == "7"
    assert labels["nvidia.com/gpu.compute.minor"] == "5"
    assert "nvidia.com/gpu.memory" not in labels  # the T4's; not the H100's
    assert labels["nvidia.com/mig.capable"] == "true"  # any GPU, as GFD


def test_unnamed_first_gpu_defers_to_the_named_one() -> None:
    features = Features()
    features.add_instances(
        "gpu.device",
        [
            {"address": "0000:01:00.0", "class": "0302", "device": "ffff"},
            {"address": "0000:02:00.0", "class": "0302", "device": "20b0", "model": "A100"},
        ],
    )
    labels = gpu_labels(features)
    assert labels["nvidia.com/gpu.product"] == "A100"
    assert labels["nvidia.com/gpu.memory"] == "40960"
    # ffff is unknown: MIG capability of every GPU is not known to be false, but one is true.
    assert labels["nvidia.com/mig.capable"] == "true"


def test_unknown_device_gets_no_architecture_labels() -> None:
    features = Features()
    features.add_instances("gpu.device", [{"address": "0000:01:00.0", "device": "ffff"}])
    labels = gpu_labels(features)
    assert labels["nvidia.com/gpu.count"] == "1"
    assert not [k for k in labels if k.split("/")[1].startswith(("gpu.family", "gpu.compute"))]
    assert "nvidia.com/gpu.memory" not in labels and "nvidia.com/mig.capable" not in labels


# ------------------------------------------------------------------ nfd export, end to end


def nfd_export(what: str, root: Path) -> dict:
    result = subprocess.run(
        [NFD, "export", what, "--host-prefix", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        # PYTHONPATH passes through, so a worktree's checkout is what runs.
        env={
            "NODE_NAME": "fixture-node",
            "PATH": "/usr/bin:/bin",
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        },
    )
    assert result.returncode == 0, result.stderr
    data: dict = json.loads(result.stdout)
    return data


def test_nfd_export_labels_on_the_datacenter_fixture() -> None:
    labels = nfd_export("labels", DATACENTER)
    assert labels["feature.node.kubernetes.io/pci-0302_10de.present"] == "true"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.family"] == "hopper"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    features = nfd_export("features", DATACENTER)
    instances = features["instances"]["gpu.device"]["elements"]
    assert len(instances) == 8
    assert instances[0]["attributes"]["sriov_numvfs"] == "4"


def test_nfd_export_labels_on_the_other_fixtures() -> None:
    consumer = nfd_export("labels", CONSUMER)
    assert consumer["feature.node.kubernetes.io/pci-0300_10de.present"] == "true"
    assert consumer["nvidia.com/gpu.product"] == "AD102-GeForce-RTX-4090"
    assert consumer["nvidia.com/gpu.family"] == "ada-lovelace"
    assert consumer["nvidia.com/mig.capable"] == "false"
    host_full = nfd_export("labels", HOST_FULL)
    assert host_full["feature.node.kubernetes.io/pci-0302_10de.present"] == "true"
    assert host_full["nvidia.com/gpu.family"] == "ampere"
    assert "nvidia.com/gpu.memory" not in host_full
    cpu = nfd_export("labels", CPU_ONLY)
    assert not any("10de" in k or k.startswith("nvidia.com/") for k in cpu)


# ------------------------------------------------------------------ pure helpers


@pytest.mark.parametrize(
    ("vendor", "class_", "expected"),
    [
        ("0x10de", "0x030200", True),
        ("0x10de", "0x030000", True),
        ("0x10DE", "0x030000\n", True),
        ("0x10de", "0x040300", False),  # HDMI audio function
        ("0x10de", "0x068000", False),  # NVSwitch
        ("0x10de", "0x0c0330", False),  # USB-C controller on Turing cards
        ("0x10de", "0x038000", False),  # "other display controller": not a GPU to the operator
        ("0x1a03", "0x030000", False),  # ASPEED BMC VGA
        (None, "0x030200", False),
        ("0x10de", None, False),
    ],
)
def test_is_nvidia_gpu(vendor: str | None, class_: str | None, expected: bool) -> None:
    assert is_nvidia_gpu(vendor, class_) is expected


def test_pci_class_and_mode() -> None:
    assert pci_class("0x030200") == "0302"
    assert gpu_mode(["0302", "0302"]) == "compute"
    assert gpu_mode(["0300"]) == "graphics"
    assert gpu_mode(["0300", "0302"]) == "unknown"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("550.54.15\n", ("550", "54", "15")),
        ("535.104\n", ("535", "104", "")),
        (
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build\n",
            ("560", "35", "03"),
        ),
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 2023\n"
            "GCC version:  gcc version 12.3.0\n",
            ("535", "129", "03"),
        ),
        ("", None),
        ("not a version", None),
        ("1.2.3.4", None),
    ],
)
def test_parse_driver_version(text: str, expected: tuple[str, str, str] | None) -> None:
    assert parse_driver_version(text) == expected


def test_parse_information() -> None:
    info = parse_information(
        "Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t 10\nBus Location: \t 0000:07:00.0\n\n"
    )
    assert info == {"Model": "NVIDIA A100-SXM4-40GB", "IRQ": "10", "Bus Location": "0000:07:00.0"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
        ("GA100 [A100 SXM4 40GB]", "GA100-A100-SXM4-40GB"),
        ("Tesla T4", "Tesla-T4"),
        ("DGX A100", "DGX-A100"),
        ("  PowerEdge R750\n", "PowerEdge-R750"),
        ("TU104GL [Tesla T4] (rev a1)", "TU104GL-Tesla-T4-rev-a1"),
        ("[weird]", "weird"),
        ("Ünïcode GPU™", "ncode-GPU"),
        ("x" * 80, "x" * 63),
        ("A" * 62 + " B", "A" * 62),  # cut at 63 would end in '-': trimmed
        ("", ""),
    ],
)
def test_sanitise_label_value(name: str, expected: str) -> None:
    value = sanitise_label_value(name)
    assert value == expected
    assert is_valid_value(value)


# ------------------------------------------------------------------ pci.ids lookup

PCI_IDS = """\
# comment
10dd  Evans & Sutherland
\t0100  Lightning 1200
10de  NVIDIA Corporation
\t0020  NV4 [Riva TNT]
\t\t1043 0200  V3400 TNT
\t2330  GH100 [H100 SXM5 80GB]
\t\t10de 16c1  H100 SXM5 80GB

\t2684  AD102 [GeForce RTX 4090]
10df  Emulex Corporation
\t2330  not an NVIDIA device
C 03  Display controller
\t00  VGA compatible controller
"""


def test_lookup_device_names() -> None:
    names = lookup_device_names(PCI_IDS.splitlines(True), "10de", {"2330", "2684", "ffff"})
    assert names == {"2330": "GH100 [H100 SXM5 80GB]", "2684": "AD102 [GeForce RTX 4090]"}
    assert lookup_device_names(PCI_IDS.splitlines(True), "10DE", ["0020"]) == {
        "0020": "NV4 [Riva TNT]"
    }
    assert lookup_device_names(PCI_IDS.splitlines(True), "10dd", ["2330"]) == {}
    assert lookup_device_names(PCI_IDS.splitlines(True), "abcd", ["2330"]) == {}
    assert lookup_device_names(PCI_IDS.splitlines(True), "10de", []) == {}


def guarded(lines: list[str], stop_at: str) -> Iterator[str]:
    """Yield lines, failing the test if the reader goes past ``stop_at``."""
    for line in lines:
        if line.startswith(stop_at):
            pytest.fail(f"read past the vendor block: {line!r}")
        yield line


def test_lookup_stops_at_the_end_of_the_vendor_block() -> None:
    lines = PCI_IDS.splitlines(True)
    # The reader may look at the next vendor's line (that is how it knows the block
    # ended) but nothing after it.
    after = lines[lines.index("10df  Emulex Corporation\n") + 1 :]
    stream = guarded(lines[: len(lines) - len(after)] + after, stop_at="\t2330  not")
    assert lookup_device_names(stream, "10de", {"2330", "ffff"}) == {
        "2330": "GH100 [H100 SXM5 80GB]"
    }


def test_lookup_stops_once_everything_is_found() -> None:
    stream = guarded(PCI_IDS.splitlines(True), stop_at="\t2684")
    assert lookup_device_names(stream, "10de", {"2330"}) == {"2330": "GH100 [H100 SXM5 80GB]"}
