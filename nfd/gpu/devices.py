"""Pure helpers for NVIDIA GPU facts read from sysfs and procfs (no NVML, no driver needed).

File access lives in ``nfd/sources/gpu.py``; everything here takes strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nfd.labels import MAX_VALUE_LEN

NVIDIA_VENDOR = "10de"
# PCI class (class + subclass): the two display classes NVIDIA GPUs use.
CLASS_VGA = "0300"  # GeForce / workstation cards, or a GPU in graphics mode
CLASS_3D = "0302"  # data-centre GPUs (compute mode)
GPU_CLASSES = (CLASS_VGA, CLASS_3D)

# GFD's gpu.mode values, by PCI class.
MODE_BY_CLASS = {CLASS_3D: "compute", CLASS_VGA: "graphics"}
MODE_UNKNOWN = "unknown"

# What GFD drops from a name for a label value: all but [A-Za-z0-9-_. ].
_NOT_GFD_LABEL_CHARS = re.compile(r"[^A-Za-z0-9\-_. ]")
# A driver version (``550.54.15``), alone (sys/module/nvidia/version) or after
# "Kernel Module" in /proc/driver/nvidia/version.
_DRIVER_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?$")
_PROC_VERSION = re.compile(r"Kernel Module\b[^\n]*?\s(\d+\.\d+(?:\.\d+)?)(?=\s|$)")


def pci_hex(value: str | None) -> str | None:
    """A sysfs id attribute (``0x10de``) as upstream's pci source stores it (``10de``)."""
    if value is None:
        return None
    value = value.strip().lower()
    return value[2:] if value.startswith("0x") else value


def pci_class(value: str | None) -> str | None:
    """``0x030200`` -> ``0302`` (class + subclass; the prog-if is dropped, as upstream)."""
    hex_value = pci_hex(value)
    return None if hex_value is None else hex_value[:4]


def is_nvidia_gpu(vendor: str | None, class_: str | None) -> bool:
    """A GPU function: vendor 10de and a display class 0300/0302 (not audio, USB, NVSwitch)."""
    return pci_hex(vendor) == NVIDIA_VENDOR and pci_class(class_) in GPU_CLASSES


def gpu_mode(classes: list[str]) -> str:
    """GFD's ``gpu.mode``: compute/graphics when every GPU agrees, else unknown."""
    modes = {MODE_BY_CLASS.get(c, MODE_UNKNOWN) for c in classes}
    return modes.pop() if len(modes) == 1 else MODE_UNKNOWN


def parse_information(text: str) -> dict[str, str]:
    """``/proc/driver/nvidia/gpus/<bdf>/information``: ``Key:  value`` lines."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            info[key.strip()] = value.strip()
    return info


def parse_driver_version(text: str) -> tuple[str, str, str] | None:
    """``550.54.15`` -> (major, minor, rev); ``535.104`` -> rev ""; else None.

    Accepts the one-line ``/sys/module/nvidia/version`` or the text of
    ``/proc/driver/nvidia/version`` (``... Kernel Module  550.54.15  <date>``).
    """
    text = text.strip()
    match = _DRIVER_VERSION.match(text)
    if match is None:
        proc = _PROC_VERSION.search(text)
        if proc is None:
            return None
        match = _DRIVER_VERSION.match(proc[1])
        if match is None:  # pragma: no cover - the two patterns agree
            return None
    return match[1], match[2], match[3] or ""


def sanitise_label_value(text: str) -> str:
    """Make a name a valid label value the way GFD does: drop characters outside
    ``[A-Za-z0-9-_. ]``, spaces -> ``-``; then trim to 63 characters and to an
    alphanumeric start and end, which Kubernetes requires and GFD leaves to chance."""
    value = _NOT_GFD_LABEL_CHARS.sub("", text.strip()).replace(" ", "-")
    value = value[:MAX_VALUE_LEN]
    return value.strip("-_.")


def product_name(device: Mapping[str, str]) -> str | None:
    """A GPU's product: the driver's model name, else the pci.ids name; sanitised."""
    name = device.get("model") or device.get("name")
    if not name:
        return None
    return sanitise_label_value(name) or None
