"""gpu source: NVIDIA GPU facts from sysfs and procfs only (no NVML, no driver needed).

Features (only on a node that has an NVIDIA GPU; nothing at all otherwise):

* ``gpu.device`` instances, one per GPU (vendor 10de, class 0300/0302, SR-IOV virtual
  functions left out: a function with a ``physfn`` link is a VF): ``address``,
  ``vendor``, ``device``, ``class``, ``subsystem_vendor``, ``subsystem_device``,
  ``numa_node``, ``driver`` (bound driver), ``sriov_totalvfs``, ``sriov_numvfs``,
  ``current_link_speed``/``width``, ``max_link_speed``/``width``, ``model`` (the
  driver's name, from ``proc/driver/nvidia/gpus/<bdf>/information``) and ``name``
  (from the host's pci.ids), each only when known.
* ``gpu.driver`` attributes ``version``, ``major``, ``minor``, ``rev`` when the nvidia
  kernel module is loaded.
* ``gpu.machine`` attribute ``product_name`` (DMI), as GFD reads it.

Labels carry GPU Feature Discovery's names (``nvidia.com/...``; keys with a ``/`` are
kept as they are by the worker). ``gpu.family``, ``gpu.compute.*``, ``mig.capable``
and ``gpu.memory`` come from the device-id table in ``nfd/gpu/arch.py``, only for ids
it knows. GFD writes its labels through the local source, which
has a higher priority, so on a node running GFD its NVML-based values win.
"""

from __future__ import annotations

import os

from nfd.features import Features
from nfd.gpu.arch import arch_labels
from nfd.gpu.devices import (
    NVIDIA_VENDOR,
    gpu_mode,
    is_nvidia_gpu,
    parse_driver_version,
    parse_information,
    pci_class,
    pci_hex,
    product_name,
    sanitise_label_value,
)
from nfd.gpu.pciids import host_device_names
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext

PCI_DEVICES = "sys/bus/pci/devices"
NVIDIA_PROC_GPUS = "proc/driver/nvidia/gpus"
NVIDIA_MODULE_VERSION = "sys/module/nvidia/version"
NVIDIA_PROC_VERSION = "proc/driver/nvidia/version"
DMI_PRODUCT_NAME = "sys/devices/virtual/dmi/id/product_name"

DEVICE_FEATURE = "gpu.device"
DRIVER_FEATURE = "gpu.driver"
MACHINE_FEATURE = "gpu.machine"

# sysfs attribute -> how the instance stores it (ids without 0x, as the pci source).
_ID_ATTRIBUTES = ("vendor", "device", "subsystem_vendor", "subsystem_device")
_PLAIN_ATTRIBUTES = (
    "numa_node",
    "sriov_totalvfs",
    "sriov_numvfs",
    "current_link_speed",
    "current_link_width",
    "max_link_speed",
    "max_link_width",
)

# GFD's value when the DMI file cannot be read.
UNKNOWN_MACHINE = "unknown"


def read_gpu_device(host: HostFS, address: str) -> dict[str, str] | None:
    """The instance of one PCI function, or None if it is not an NVIDIA GPU (or a VF)."""
    base = f"{PCI_DEVICES}/{address}"
    vendor = host.read_attr(f"{base}/vendor")
    class_ = host.read_attr(f"{base}/class")
    if not is_nvidia_gpu(vendor, class_) or host.exists(f"{base}/physfn"):
        return None
    device: dict[str, str] = {"address": address, "class": pci_class(class_) or ""}
    for attr in _ID_ATTRIBUTES:
        value = pci_hex(host.read_attr(f"{base}/{attr}"))
        if value:
            device[attr] = value
    for attr in _PLAIN_ATTRIBUTES:
        value = host.read_attr(f"{base}/{attr}")
        if value:
            device[attr] = value
    driver = host.readlink(f"{base}/driver")
    if driver:
        device["driver"] = os.path.basename(driver.rstrip("/"))
    info = host.read_text(f"{NVIDIA_PROC_GPUS}/{address}/information", limit=64 * 1024)
    if info is not None:
        model = parse_information(info).get("Model")
        if model:
            device["model"] = model
    return device


def discover_gpus(host: HostFS) -> list[dict[str, str]]:
    """Every NVIDIA GPU physical function, in PCI address order, with pci.ids names."""
    gpus = [
        gpu
        for address in host.listdir(PCI_DEVICES)
        if (gpu := read_gpu_device(host, address)) is not None
    ]
    # One streamed pass over pci.ids for all devices still lacking a driver name.
    unnamed = {g["device"] for g in gpus if "model" not in g and "device" in g}
    names = host_device_names(host, NVIDIA_VENDOR, unnamed)
    for gpu in gpus:
        name = names.get(gpu.get("device", ""))
        if name:
            gpu["name"] = name
    return gpus


def read_driver_version(host: HostFS) -> dict[str, str] | None:
    for rel in (NVIDIA_MODULE_VERSION, NVIDIA_PROC_VERSION):
        text = host.read_text(rel, limit=64 * 1024)
        if text is None:
            continue
        parts = parse_driver_version(text)
        if parts is not None:
            major, minor, rev = parts
            version = f"{major}.{minor}.{rev}" if rev else f"{major}.{minor}"
            return {"version": version, "major": major, "minor": minor, "rev": rev}
    return None


def gpu_labels(features: Features) -> dict[str, str]:
    """GFD-named labels from the gpu features (pure)."""
    gpus = features.instances.get(DEVICE_FEATURE, [])
    if not gpus:
        return {}
    labels = {
        "nvidia.com/gpu.count": str(len(gpus)),
        "nvidia.com/gpu.mode": gpu_mode([g.get("class", "") for g in gpus]),
    }
    # GFD labels one device's model; ours is the first GPU in PCI order that has a
    # name, and the architecture labels describe that same GPU.
    reference = next((g for g in gpus if product_name(g)), gpus[0])
    product = product_name(reference)
    if product:
        labels["nvidia.com/gpu.product"] = product
    labels.update(arch_labels(reference.get("device"), [g.get("device") for g in gpus]))
    machine = features.attributes.get(MACHINE_FEATURE, {}).get("product_name", "")
    labels["nvidia.com/gpu.machine"] = sanitise_label_value(machine) or UNKNOWN_MACHINE
    driver = features.attributes.get(DRIVER_FEATURE)
    if driver:
        major, minor, rev = driver["major"], driver["minor"], driver.get("rev", "")
        # Old names (GFD v0.1+, deprecated) and the v0.15+ ones; GFD writes both.
        labels["nvidia.com/cuda.driver.major"] = major
        labels["nvidia.com/cuda.driver.minor"] = minor
        labels["nvidia.com/cuda.driver.rev"] = rev
        labels["nvidia.com/cuda.driver-version.major"] = major
        labels["nvidia.com/cuda.driver-version.minor"] = minor
        labels["nvidia.com/cuda.driver-version.revision"] = rev
        labels["nvidia.com/cuda.driver-version.full"] = driver["version"]
    return labels


class GpuSource(Source):
    name = "gpu"

    def discover(self, ctx: SourceContext) -> Features:
        features = Features()
        gpus = discover_gpus(ctx.host)
        if not gpus:
            return features
        features.add_instances(DEVICE_FEATURE, gpus)
        driver = read_driver_version(ctx.host)
        if driver is not None:
            features.add_attributes(DRIVER_FEATURE, driver)
        machine = ctx.host.read_attr(DMI_PRODUCT_NAME)
        if machine:
            features.add_attributes(MACHINE_FEATURE, {"product_name": machine})
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return gpu_labels(features)


SOURCE = GpuSource()
