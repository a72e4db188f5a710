"""The device-id table (nfd/gpu/arch.py, nfd/gpu/pcitable.py) and the precedence rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nfd.gpu.arch import (
    CHIP_COMPUTE,
    MEMORY_MIB,
    MIG_CAPABLE_IDS,
    MIG_CHIPS,
    arch_labels,
    gfd_family,
    lookup,
    mig_capable,
)
from nfd.gpu.pcitable import DEVICE_CHIPS

REPO = Path(__file__).resolve().parents[2]
FIXTURE_PCI_IDS = REPO / "tests/fixtures/gpu-datacenter/usr/share/misc/pci.ids"


@pytest.mark.parametrize(
    ("major", "minor", "family"),
    [
        (1, 3, "tesla"),
        (2, 1, "fermi"),
        (3, 5, "kepler"),
        (5, 2, "maxwell"),
        (6, 1, "pascal"),
        (7, 0, "volta"),
        (7, 2, "volta"),
        (7, 5, "turing"),
        (8, 0, "ampere"),
        (8, 6, "ampere"),
        (8, 7, "ampere"),
        (8, 9, "ada-lovelace"),
        (9, 0, "hopper"),
        (10, 0, "blackwell"),
        (12, 0, "blackwell"),
        (13, 0, "rubin"),
        (4, 0, "undefined"),
        (11, 0, "undefined"),
    ],
)
def test_gfd_family(major: int, minor: int, family: str) -> None:
    assert gfd_family(major, minor) == family


@pytest.mark.parametrize(
    ("device", "chip", "compute", "mig", "memory"),
    [
        ("2330", "GH100", (9, 0), True, 81559),  # H100 SXM5 80GB
        ("0x2330", "GH100", (9, 0), True, 81559),
        ("2335", "GH100", (9, 0), True, 143771),  # H200 SXM 141GB
        ("20B0", "GA100", (8, 0), True, 40960),  # A100 SXM4 40GB
        ("20b2", "GA100", (8, 0), True, 81920),
        ("20b5", "GA100", (8, 0), True, None),  # A100 PCIe 80GB: no published reading
        ("20b7", "GA100", (8, 0), True, None),  # A30
        ("2082", "GA100", (8, 0), None, None),  # CMP 170HX: MIG unknown
        ("2684", "AD102", (8, 9), False, None),  # GeForce RTX 4090
        ("27b8", "AD104", (8, 9), False, None),  # L4 (GDDR6: ECC-dependent memory)
        ("1eb8", "TU104", (7, 5), False, None),  # Tesla T4
        ("1db1", "GV100", (7, 0), False, None),  # V100 SXM2 16GB
        ("2236", "GA102", (8, 6), False, None),  # A10
        ("2901", "GB100", (10, 0), True, None),  # B200
        ("2b85", "GB202", (12, 0), None, None),  # GeForce RTX 5090
        ("2bb5", "GB202", (12, 0), True, None),  # RTX PRO 6000 Blackwell Server Edition
        ("2c02", "GB203", (12, 0), False, None),  # GeForce RTX 5080
    ],
)
def test_lookup(
    device: str, chip: str, compute: tuple[int, int], mig: bool | None, memory: int | None
) -> None:
    arch = lookup(device)
    assert arch is not None
    assert arch.chip == chip
    assert (arch.compute_major, arch.compute_minor) == compute
    assert arch.mig_capable is mig
    assert arch.memory_mib == memory


@pytest.mark.parametrize(
    "device",
    [
        "22a3",  # H100 NVSwitch (class 0680)
        "1af1",  # A100 NVSwitch
        "22ba",  # AD102 HD audio
        "1024",  # Kepler K40c: before the table's range
        "ffff",
        "",
        None,
        "2e2a",  # GB20B: chip not in the table
    ],
)
def test_lookup_unknown(device: str | None) -> None:
    assert lookup(device) is None


def test_table_consistency() -> None:
    assert len(DEVICE_CHIPS) > 500
    assert set(DEVICE_CHIPS.values()) <= set(CHIP_COMPUTE)
    assert all(len(d) == 4 and d == d.lower() for d in DEVICE_CHIPS)
    # MIG and memory facts are only for ids the table has, on chips with MIG.
    for device in MIG_CAPABLE_IDS:
        assert DEVICE_CHIPS[device] in MIG_CHIPS, device
    for device, mib in MEMORY_MIB.items():
        assert device in DEVICE_CHIPS and mib > 0, device


def test_mig_capable_any_known_none_unknown() -> None:
    assert mig_capable(["2684", "2330"]) is True
    assert mig_capable(["2684", "1eb8"]) is False
    assert mig_capable(["2684", "ffff"]) is None  # one unknown, none capable
    assert mig_capable(["ffff", "2330"]) is True
    assert mig_capable([]) is None


def test_arch_labels_spelled_as_gfd() -> None:
    assert arch_labels("2330", ["2330"] * 8) == {
        "nvidia.com/gpu.family": "hopper",
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.compute.minor": "0",
        "nvidia.com/gpu.memory": "81559",
        "nvidia.com/mig.capable": "true",
    }
    assert arch_labels("ffff", ["ffff"]) == {}
    # An unknown reference borrows nothing from a known second GPU except mig.capable.
    assert arch_labels("ffff", ["ffff", "2330"]) == {"nvidia.com/mig.capable": "true"}


def test_generator_on_a_pci_ids_excerpt() -> None:
    """hack/gen-gpu-table.py keeps GPUs of known chips, drops NVSwitches and audio, and
    agrees with the committed table on every id it emits."""
    result = subprocess.run(
        [sys.executable, str(REPO / "hack/gen-gpu-table.py"), str(FIXTURE_PCI_IDS), "test"],
        capture_output=True,
        text=True,
        check=True,
    )
    namespace: dict[str, object] = {}
    exec(compile(result.stdout, "pcitable", "exec"), namespace)  # noqa: S102 - our own output
    generated = namespace["DEVICE_CHIPS"]
    assert generated == {"20b0": "GA100", "20b2": "GA100", "2330": "GH100", "2684": "AD102"}
    assert all(DEVICE_CHIPS[d] == chip for d, chip in generated.items())  # type: ignore[attr-defined]
