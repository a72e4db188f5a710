"""Write the GPU fixture host trees under tests/fixtures/ (run it to regenerate them).

    .venv/bin/python -m tests.gpu.build_fixtures

The trees are committed as data files; this script is their single source, so a
change to a fixture is a change here. Provenance of every value: tests/fixtures/README.md.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class PciFunction:
    address: str
    vendor: str
    device: str
    class_: str  # 6 hex digits, as the sysfs file (without 0x)
    subsystem_vendor: str
    subsystem_device: str
    driver: str | None = None
    numa_node: int = -1
    link: tuple[str, int] | None = None  # (speed, width)
    extra: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _symlink(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def write_function(root: Path, fn: PciFunction) -> None:
    base = f"sys/bus/pci/devices/{fn.address}"
    _write(root, f"{base}/vendor", f"0x{fn.vendor}\n")
    _write(root, f"{base}/device", f"0x{fn.device}\n")
    _write(root, f"{base}/class", f"0x{fn.class_}\n")
    _write(root, f"{base}/subsystem_vendor", f"0x{fn.subsystem_vendor}\n")
    _write(root, f"{base}/subsystem_device", f"0x{fn.subsystem_device}\n")
    _write(root, f"{base}/numa_node", f"{fn.numa_node}\n")
    if fn.link is not None:
        speed, width = fn.link
        for kind in ("current", "max"):
            _write(root, f"{base}/{kind}_link_speed", f"{speed}\n")
            _write(root, f"{base}/{kind}_link_width", f"{width}\n")
    for name, text in fn.extra.items():
        _write(root, f"{base}/{name}", text)
    if fn.driver is not None:
        # Same relative shape as sysfs (devices are links into /sys/devices there; a
        # plain directory here, which readers cannot tell apart).
        _symlink(root, f"{base}/driver", f"../../../../bus/pci/drivers/{fn.driver}")
    for name, target in fn.links.items():
        _symlink(root, f"{base}/{name}", target)


def write_system(
    root: Path, product: str, vendor: str, os_release: str, kernel: str, disk: str = "nvme0n1"
) -> None:
    _write(root, "sys/devices/virtual/dmi/id/product_name", f"{product}\n")
    _write(root, "sys/devices/virtual/dmi/id/sys_vendor", f"{vendor}\n")
    _write(root, "etc/os-release", os_release)
    _write(root, "proc/sys/kernel/osrelease", f"{kernel}\n")
    # Every host has a loopback interface and a disk; without them the network and
    # storage sources would report a missing directory.
    _write(root, "sys/class/net/lo/operstate", "unknown\n")
    _write(root, "sys/class/net/lo/mtu", "65536\n")
    _write(root, f"sys/block/{disk}/queue/rotational", "0\n")
    _write(root, f"sys/block/{disk}/queue/zoned", "none\n")


# pci.ids excerpts: only the vendor and device lines these hosts need, in the file's
# order (vendors sorted by id), plus the display class lines of the class section.
PCI_IDS_HEADER = """\
#
#\tList of PCI ID's (excerpt written for the nfd GPU fixtures)
#
#\tSyntax:
#\tvendor  vendor_name
#\t\tdevice  device_name\t\t\t\t<-- single tab
#\t\t\tsubvendor subdevice  subsystem_name\t<-- two tabs
#
"""
PCI_IDS_CLASSES = """\
# List of known device classes, subclasses and programming interfaces
C 02  Network controller
\t00  Ethernet controller
\t07  Infiniband controller
C 03  Display controller
\t00  VGA compatible controller
\t02  3D controller
C 04  Multimedia controller
\t03  Audio device
C 06  Bridge
\t00  Host bridge
\t80  Bridge
"""

NVIDIA_PCI_IDS = """\
10de  NVIDIA Corporation
\t20b0  GA100 [A100 SXM4 40GB]
\t20b2  GA100 [A100 SXM4 80GB]
\t22a3  GH100 [H100 NVSwitch]
\t22ba  AD102 High Definition Audio Controller
\t2330  GH100 [H100 SXM5 80GB]
\t\t10de 16c1  H100 SXM5 80GB
\t2684  AD102 [GeForce RTX 4090]
\t\t1458 40bf  AD102 [GeForce RTX 4090]
"""


def build_datacenter(root: Path) -> None:
    """An 8-GPU HGX/DGX H100 node: eight H100 SXM5 (3D controller), four NVSwitches,
    a ConnectX-7, the BMC's ASPEED VGA; SR-IOV enabled on the first GPU (4 VFs)."""
    gpus = [
        ("0000:1b:00.0", 0),
        ("0000:43:00.0", 0),
        ("0000:52:00.0", 0),
        ("0000:61:00.0", 0),
        ("0000:9d:00.0", 1),
        ("0000:c3:00.0", 1),
        ("0000:d1:00.0", 1),
        ("0000:df:00.0", 1),
    ]
    for minor, (address, numa) in enumerate(gpus):
        vfs = 4 if minor == 0 else 0
        bus, slot = address[:-4], address[-4:-2]
        vf_addresses = [f"{bus}{slot}.{4 + i}" for i in range(vfs)]
        write_function(
            root,
            PciFunction(
                address,
                "10de",
                "2330",
                "030200",
                "10de",
                "16c1",
                driver="nvidia",
                numa_node=numa,
                link=("32.0 GT/s PCIe", 16),
                extra={"sriov_totalvfs": "32\n", "sriov_numvfs": f"{vfs}\n"},
                links={f"virtfn{i}": f"../{vf}" for i, vf in enumerate(vf_addresses)},
            ),
        )
        for vf in vf_addresses:
            write_function(
                root,
                PciFunction(
                    vf,
                    "10de",
                    "2330",
                    "030200",
                    "10de",
                    "16c1",
                    driver="nvidia",
                    numa_node=numa,
                    link=("32.0 GT/s PCIe", 16),
                    links={"physfn": f"../{address}"},
                ),
            )
        _write(
            root,
            f"proc/driver/nvidia/gpus/{address}/information",
            "Model: \t\t NVIDIA H100 80GB HBM3\n"
            "IRQ:   \t\t 10\n"
            f"GPU UUID: \t GPU-00000000-0000-4000-8000-0000000000{minor:02d}\n"
            "Video BIOS: \t 96.00.99.00.01\n"
            "Bus Type: \t PCIe\n"
            "DMA Size: \t 52 bits\n"
            "DMA Mask: \t 0xfffffffffffff\n"
            f"Bus Location: \t {address}\n"
            f"Device Minor: \t {minor}\n"
            "GPU Firmware: \t 535.129.03\n"
            "GPU Excluded:\t No\n",
        )
    for i, address in enumerate(["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]):
        write_function(
            root,
            PciFunction(
                address, "10de", "22a3", "068000", "10de", "1796", driver="nvidia", numa_node=i // 2
            ),
        )
    write_function(
        root,
        PciFunction(
            "0000:18:00.0",
            "15b3",
            "1021",
            "020700",
            "15b3",
            "0041",
            driver="mlx5_core",
            numa_node=0,
            link=("32.0 GT/s PCIe", 16),
        ),
    )
    write_function(
        root,
        PciFunction(
            "0000:c1:00.0", "1a03", "2000", "030000", "1a03", "2000", driver="ast", numa_node=1
        ),
    )
    _write(root, "sys/module/nvidia/version", "535.129.03\n")
    _write(root, "sys/module/nvidia/refcnt", "312\n")
    _write(
        root,
        "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  "
        "Thu Oct 19 18:56:32 UTC 2023\n"
        "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n",
    )
    write_system(
        root,
        "DGX H100",
        "NVIDIA",
        'PRETTY_NAME="Ubuntu 22.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
        'VERSION="22.04.3 LTS (Jammy Jellyfish)"\nID=ubuntu\nID_LIKE=debian\n',
        "5.15.0-1042-nvidia",
    )
    _write(
        root,
        "usr/share/misc/pci.ids",
        PCI_IDS_HEADER
        + NVIDIA_PCI_IDS
        + "15b3  Mellanox Technologies\n\t1021  MT2910 Family [ConnectX-7]\n"
        + "1a03  ASPEED Technology, Inc.\n\t2000  ASPEED Graphics Family\n"
        + PCI_IDS_CLASSES,
    )


def build_consumer(root: Path) -> None:
    """A desktop with a GeForce RTX 4090 (VGA class + its HDMI audio function) and an
    Intel iGPU; no NVIDIA driver loaded (nouveau bound), so names come from pci.ids."""
    write_function(
        root,
        PciFunction(
            "0000:00:02.0", "8086", "a780", "030000", "1458", "d000", driver="i915", numa_node=-1
        ),
    )
    write_function(
        root,
        PciFunction(
            "0000:01:00.0",
            "10de",
            "2684",
            "030000",
            "1458",
            "40bf",
            driver="nouveau",
            link=("16.0 GT/s PCIe", 16),
        ),
    )
    write_function(
        root,
        PciFunction(
            "0000:01:00.1",
            "10de",
            "22ba",
            "040300",
            "1458",
            "40bf",
            driver="snd_hda_intel",
            link=("16.0 GT/s PCIe", 16),
        ),
    )
    write_system(
        root,
        "Z790 AORUS ELITE AX",
        "Gigabyte Technology Co., Ltd.",
        'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
        'VERSION="24.04.1 LTS (Noble Numbat)"\nID=ubuntu\nID_LIKE=debian\n',
        "6.8.0-49-generic",
    )
    _write(
        root,
        "usr/share/misc/pci.ids",
        PCI_IDS_HEADER
        + NVIDIA_PCI_IDS
        + "8086  Intel Corporation\n\ta780  Raptor Lake-S GT1 [UHD Graphics 770]\n"
        + PCI_IDS_CLASSES,
    )


def build_cpu_only(root: Path) -> None:
    """A 1U AMD EPYC server (Dell PowerEdge R6515): Matrox BMC VGA, Broadcom NICs, no GPU."""
    write_function(
        root,
        PciFunction("0000:00:00.0", "1022", "1480", "060000", "1028", "08ff", numa_node=0),
    )
    for address in ("0000:01:00.0", "0000:01:00.1"):
        write_function(
            root,
            PciFunction(
                address,
                "14e4",
                "165f",
                "020000",
                "1028",
                "08ff",
                driver="tg3",
                numa_node=0,
                link=("5.0 GT/s PCIe", 1),
            ),
        )
    write_function(
        root,
        PciFunction(
            "0000:03:00.0", "102b", "0536", "030000", "1028", "08ff", driver="mgag200", numa_node=0
        ),
    )
    write_system(
        root,
        "PowerEdge R6515",
        "Dell Inc.",
        'NAME="Red Hat Enterprise Linux"\nVERSION="9.4 (Plow)"\nID="rhel"\n'
        'ID_LIKE="fedora"\nVERSION_ID="9.4"\nPRETTY_NAME="Red Hat Enterprise Linux 9.4 (Plow)"\n',
        "5.14.0-427.13.1.el9_4.x86_64",
        disk="sda",
    )
    _write(
        root,
        "usr/share/hwdata/pci.ids",
        PCI_IDS_HEADER
        + "1022  Advanced Micro Devices, Inc. [AMD]\n\t1480  Starship/Matisse Root Complex\n"
        + "102b  Matrox Electronics Systems Ltd.\n"
        + "\t0536  Integrated Matrox G200eW3 Graphics Controller\n"
        + NVIDIA_PCI_IDS
        + "14e4  Broadcom Inc. and subsidiaries\n"
        + "\t165f  NetXtreme BCM5720 Gigabit Ethernet PCIe\n"
        + PCI_IDS_CLASSES,
    )


TREES = {
    "gpu-datacenter": build_datacenter,
    "gpu-consumer": build_consumer,
    "cpu-only": build_cpu_only,
}


def main() -> None:
    for name, build in TREES.items():
        root = FIXTURES / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build(root)
        print(f"wrote {root}")


if __name__ == "__main__":
    main()
