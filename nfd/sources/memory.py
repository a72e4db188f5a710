"""memory source: NUMA, NVDIMM, swap and huge pages.

NUMA nodes are counted in ``sys/bus/node/devices`` as upstream does; when that
directory is missing (older or trimmed sysfs trees) we count the
``node<N>`` entries of ``sys/devices/system/node`` instead, where the same
devices live.
"""

from __future__ import annotations

import logging
import re

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext

log = logging.getLogger(__name__)

NUMA_BUS_DIR = "sys/bus/node/devices"
NUMA_SYSTEM_DIR = "sys/devices/system/node"
ND_DEVICES_DIR = "sys/bus/nd/devices"
HUGEPAGES_DIR = "sys/kernel/mm/hugepages"
_NODE_DIR = re.compile(r"node\d+$")
# Per-device files upstream reads for ``memory.nv``.
ND_DEVICE_ATTRIBUTES = ("devtype", "mode")
# Binary suffixes of Kubernetes quantities, largest first, as powers of KiB.
_BINARY_SUFFIXES = (
    ("Ei", 1 << 50),
    ("Pi", 1 << 40),
    ("Ti", 1 << 30),
    ("Gi", 1 << 20),
    ("Mi", 1 << 10),
)


# -- pure helpers -------------------------------------------------------------


def count_swap_lines(text: str) -> int:
    """Non-empty lines of /proc/swaps (a header plus one line per swap area)."""
    return sum(1 for line in text.splitlines() if line.strip())


def is_node_dir(name: str) -> bool:
    """A NUMA node entry (``node0``)."""
    return _NODE_DIR.match(name) is not None


def numa_attributes(node_count: int) -> dict[str, str]:
    return {"is_numa": _bool(node_count > 1), "node_count": str(node_count)}


def kib_quantity(kib: int) -> str:
    """A size in KiB as Kubernetes writes the quantity: 2048 -> ``2Mi``, 1048576 -> ``1Gi``."""
    if kib == 0:
        return "0"
    for suffix, scale in _BINARY_SUFFIXES:
        if kib % scale == 0:
            return f"{kib // scale}{suffix}"
    return f"{kib}Ki"


def hugepage_size_name(dirname: str) -> str | None:
    """``hugepages-2048kB`` -> ``hugepages-2Mi``; None when the size is not a number.

    Upstream strips the prefix and trailing ``k``/``B`` characters and parses
    the rest as KiB.
    """
    size = dirname.removeprefix("hugepages-").rstrip("kB")
    if not (size.isascii() and size.isdigit()):
        return None
    return "hugepages-" + kib_quantity(int(size))


def _bool(value: bool) -> str:
    return "true" if value else "false"


# -- reading the host ---------------------------------------------------------


def detect_numa(host: HostFS) -> dict[str, str] | None:
    if host.is_dir(NUMA_BUS_DIR):
        return numa_attributes(len(host.listdir(NUMA_BUS_DIR)))
    if host.is_dir(NUMA_SYSTEM_DIR):
        nodes = [n for n in host.listdir(NUMA_SYSTEM_DIR) if is_node_dir(n)]
        return numa_attributes(len(nodes))
    log.debug("memory: no NUMA node directory under %s", host.prefix)
    return None


def detect_swap(host: HostFS) -> dict[str, str] | None:
    text = host.read_text("proc/swaps")
    if text is None:
        return None
    return {"enabled": _bool(count_swap_lines(text) > 1)}


def detect_nv(host: HostFS) -> list[dict[str, str]]:
    """One instance per nd bus device: name, devtype, mode (when readable)."""
    devices = []
    for name in host.listdir(ND_DEVICES_DIR):
        device = {"name": name}
        for attr in ND_DEVICE_ATTRIBUTES:
            value = host.read_attr(f"{ND_DEVICES_DIR}/{name}/{attr}")
            if value is not None:
                device[attr] = value
        devices.append(device)
    return devices


def detect_hugepages(host: HostFS) -> dict[str, str]:
    """``enabled`` (any pool has pages) and ``hugepages-<size>`` = nr_hugepages.

    An unreadable nr_hugepages gives an empty value, as upstream.
    """
    pages = {"enabled": "false"}
    for entry in host.listdir(HUGEPAGES_DIR):
        name = hugepage_size_name(entry)
        if name is None or not host.is_dir(f"{HUGEPAGES_DIR}/{entry}"):
            continue
        count = host.read_attr(f"{HUGEPAGES_DIR}/{entry}/nr_hugepages") or ""
        pages[name] = count
        if count.isascii() and count.isdigit() and int(count) > 0:
            pages["enabled"] = "true"
    return pages


class MemorySource(Source):
    name = "memory"

    def discover(self, ctx: SourceContext) -> Features:
        host, features = ctx.host, Features()
        numa = detect_numa(host)
        if numa is not None:
            features.add_attributes("memory.numa", numa)
        swap = detect_swap(host)
        if swap is not None:
            features.add_attributes("memory.swap", swap)
        features.add_instances("memory.nv", detect_nv(host))
        features.add_attributes("memory.hugepages", detect_hugepages(host))
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        labels = {}
        if features.attributes.get("memory.numa", {}).get("is_numa") == "true":
            labels["numa"] = "true"
        # Upstream's key is "swap", although its docs say "swap.enabled".
        if features.attributes.get("memory.swap", {}).get("enabled") == "true":
            labels["swap"] = "true"
        devices = features.instances.get("memory.nv", [])
        if devices:
            labels["nv.present"] = "true"
        if any(dev.get("devtype") == "nd_dax" for dev in devices):
            labels["nv.dax"] = "true"
        return labels


SOURCE = MemorySource()
