"""GPU architecture facts from the PCI device id alone (no NVML, no driver needed).

GPU Feature Discovery gets ``gpu.family``, ``gpu.compute.major/minor``, ``mig.capable``
and ``gpu.memory`` from NVML, i.e. only once the driver runs. This module gives the
same labels, spelled as GFD spells them, from a device-id table, and only for ids the
table knows: an unknown device gets no value rather than a guess.

Sources of the facts (read, not copied):

* device id -> chip: the ``pci.ids`` database (``nfd/gpu/pcitable.py`` is generated
  from the copy go-nvlib embeds, version 2025.07.11, by ``hack/gen-gpu-table.py``);
* chip -> CUDA compute capability: NVIDIA's "CUDA GPUs" compute-capability list and
  the CUDA C++ Programming Guide (capability is a property of the chip);
* capability -> family: GFD's own mapping (k8s-device-plugin ``internal/lm``);
* MIG: the products NVIDIA's MIG User Guide lists as supported; chips without MIG
  hardware are ``false``, other ids of MIG chips are unknown;
* memory: the total NVML reports (what GFD labels, MiB), only for HBM products whose
  reading is published and whose capacity the id fixes (docs/gpu.md says which).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nfd.gpu.pcitable import DEVICE_CHIPS

FAMILY_LABEL = "nvidia.com/gpu.family"
COMPUTE_MAJOR_LABEL = "nvidia.com/gpu.compute.major"
COMPUTE_MINOR_LABEL = "nvidia.com/gpu.compute.minor"
MEMORY_LABEL = "nvidia.com/gpu.memory"
MIG_CAPABLE_LABEL = "nvidia.com/mig.capable"

# Chip -> (compute major, minor). Maxwell onwards: the chips current drivers support.
CHIP_COMPUTE: dict[str, tuple[int, int]] = {
    "GM107": (5, 0),
    "GM108": (5, 0),
    "GM200": (5, 2),
    "GM204": (5, 2),
    "GM206": (5, 2),
    "GP100": (6, 0),
    "GP102": (6, 1),
    "GP104": (6, 1),
    "GP106": (6, 1),
    "GP107": (6, 1),
    "GP108": (6, 1),
    "GV100": (7, 0),
    "TU102": (7, 5),
    "TU104": (7, 5),
    "TU106": (7, 5),
    "TU116": (7, 5),
    "TU117": (7, 5),
    "GA100": (8, 0),
    "GA102": (8, 6),
    "GA103": (8, 6),
    "GA104": (8, 6),
    "GA106": (8, 6),
    "GA107": (8, 6),
    "AD102": (8, 9),
    "AD103": (8, 9),
    "AD104": (8, 9),
    "AD106": (8, 9),
    "AD107": (8, 9),
    "GH100": (9, 0),
    "GB100": (10, 0),
    "GB102": (10, 0),
    "GB202": (12, 0),
    "GB203": (12, 0),
    "GB205": (12, 0),
    "GB206": (12, 0),
    "GB207": (12, 0),
}

# Chips that have MIG hardware; every other chip above is MIG-incapable.
MIG_CHIPS = frozenset({"GA100", "GH100", "GB100", "GB102", "GB202"})

# Ids of MIG chips that are MIG-capable products (NVIDIA's MIG User Guide): A100, A800,
# A30; H100, H800, H20, H200, GH200; B200, GB200; RTX PRO 6000 Blackwell Server Edition.
# Other ids of those chips (engineering, mining, converged cards) stay unknown.
MIG_CAPABLE_IDS = frozenset(
    {
        "20b0",  # A100 SXM4 40GB
        "20b1",  # A100 PCIe 40GB
        "20b2",  # A100 SXM4 80GB
        "20b3",  # A100-SXM-64GB
        "20b5",  # A100 PCIe 80GB
        "20b7",  # A30 PCIe
        "20bd",  # A800 SXM4 40GB
        "20f1",  # A100 PCIe 40GB
        "20f3",  # A800-SXM4-80GB
        "20f5",  # A800 80GB PCIe
        "20f6",  # A800 40GB PCIe
        "2321",  # H100 NVL (pci.ids: H100L 94GB)
        "2322",  # H800 PCIe
        "2324",  # H800
        "2329",  # H20
        "2330",  # H100 SXM5 80GB
        "2331",  # H100 PCIe
        "2335",  # H200 SXM 141GB
        "2339",  # H100 SXM5 94GB
        "233b",  # H200 NVL
        "233d",  # H100 96GB
        "2342",  # GH200 120GB / 480GB
        "2348",  # GH200 144G HBM3e
        "2901",  # B200
        "2941",  # HGX GB200
        "2bb5",  # RTX PRO 6000 Blackwell Server Edition
    }
)

# Id -> the total memory NVML reports (MiB), i.e. GFD's gpu.memory. Only HBM products
# (ECC there costs no capacity, so the value does not depend on the ECC mode) whose
# NVML reading is published (nvidia-smi output, e.g. Modal's "GPU memory capacity"
# table) and whose capacity the id alone fixes. GDDR products are left out: with ECC
# on, part of the memory is reserved, so NVML's total depends on the ECC mode.
MEMORY_MIB: dict[str, int] = {
    "20b0": 40960,  # A100 SXM4 40GB (40 GiB)
    "20b2": 81920,  # A100 SXM4 80GB (80 GiB)
    "2330": 81559,  # H100 SXM5 80GB (NVIDIA H100 80GB HBM3)
    "2335": 143771,  # H200 SXM 141GB
}


@dataclass(frozen=True)
class GpuArch:
    """What the table knows about one device id; ``None``: unknown, no label."""

    chip: str
    compute_major: int
    compute_minor: int
    mig_capable: bool | None
    memory_mib: int | None


def gfd_family(major: int, minor: int) -> str:
    """GFD's ``gpu.family`` for a compute capability (its names, ``undefined`` else)."""
    if major == 7:
        return "volta" if minor < 5 else "turing"
    if major == 8:
        return "ampere" if minor < 9 else "ada-lovelace"
    names = {
        1: "tesla",
        2: "fermi",
        3: "kepler",
        5: "maxwell",
        6: "pascal",
        9: "hopper",
        10: "blackwell",
        12: "blackwell",
        13: "rubin",
    }
    return names.get(major, "undefined")


def lookup(device_id: str | None) -> GpuArch | None:
    """The table's facts for a PCI device id (4 hex digits, ``0x`` allowed), or None."""
    if not device_id:
        return None
    device_id = device_id.strip().lower().removeprefix("0x")
    chip = DEVICE_CHIPS.get(device_id)
    if chip is None or chip not in CHIP_COMPUTE:
        return None
    major, minor = CHIP_COMPUTE[chip]
    if chip not in MIG_CHIPS:
        mig: bool | None = False
    elif device_id in MIG_CAPABLE_IDS:
        mig = True
    else:
        mig = None
    return GpuArch(chip, major, minor, mig, MEMORY_MIB.get(device_id))


def mig_capable(devices: Sequence[str | None]) -> bool | None:
    """GFD's ``mig.capable`` (true when any GPU is): True if any device is known
    capable; False only when every device is known incapable; else None (unknown)."""
    known = [lookup(d) for d in devices]
    if any(a is not None and a.mig_capable for a in known):
        return True
    if known and all(a is not None and a.mig_capable is False for a in known):
        return False
    return None


def arch_labels(reference: str | None, devices: Sequence[str | None]) -> dict[str, str]:
    """GFD's architecture labels for a node (pure).

    ``reference`` is the device id of the GPU the node's other per-GPU labels describe
    (the first GPU, as GFD labels one device's model); ``devices`` are all GPUs' ids,
    for ``mig.capable``. Nothing is borrowed from another GPU when the reference is
    unknown to the table.
    """
    labels: dict[str, str] = {}
    arch = lookup(reference)
    if arch is not None:
        labels[FAMILY_LABEL] = gfd_family(arch.compute_major, arch.compute_minor)
        labels[COMPUTE_MAJOR_LABEL] = str(arch.compute_major)
        labels[COMPUTE_MINOR_LABEL] = str(arch.compute_minor)
        if arch.memory_mib is not None:
            labels[MEMORY_LABEL] = str(arch.memory_mib)
    mig = mig_capable(devices)
    if mig is not None:
        labels[MIG_CAPABLE_LABEL] = "true" if mig else "false"
    return labels
