"""usb source: ``usb.device`` instances and ``<devlabel>.present`` labels.

A USB device is any entry of ``sys/bus/usb/devices`` with an ``idProduct``
file (the bus also lists interfaces and ports, which have none). A device of
class ``00`` declares its class per interface, so it yields one instance per
interface, each carrying that interface's class (duplicates kept, as upstream).
"""

from __future__ import annotations

import logging
from typing import Any

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext
from nfd.sources.pci import configured_device_labels

log = logging.getLogger(__name__)

DEVICES_DIR = "sys/bus/usb/devices"
DEVICE_FEATURE = "usb.device"

# Attribute name -> sysfs file, in the canonical order of label fields.
ATTR_FILES = {
    "class": "bDeviceClass",
    "vendor": "idVendor",
    "device": "idProduct",
    "serial": "serial",
}

DEFAULT_CLASS_WHITELIST = ("0e", "ef", "fe", "ff")
DEFAULT_LABEL_FIELDS = ("class", "vendor", "device")

# bDeviceClass 00: "use the class information in the interface descriptors".
PER_INTERFACE_CLASS = "00"


def device_instances(attrs: dict[str, str], interface_classes: list[str]) -> list[dict[str, str]]:
    """The instances one device yields: itself, or one per interface when its class is 00."""
    if attrs.get("class", "") != PER_INTERFACE_CLASS:
        return [dict(attrs)]
    return [{**attrs, "class": cls} for cls in interface_classes]


def read_device(host: HostFS, rel: str) -> list[dict[str, str]] | None:
    """Instances of the USB device at ``rel``; None when an interface class is unreadable."""
    attrs: dict[str, str] = {}
    for name, filename in ATTR_FILES.items():
        value = host.read_attr(f"{rel}/{filename}")
        if value:  # missing and empty files are left out alike
            attrs[name] = value
    interface_classes: list[str] = []
    if attrs.get("class", "") == PER_INTERFACE_CLASS:
        for entry in host.listdir(rel):
            class_file = f"{rel}/{entry}/bInterfaceClass"
            if not host.exists(class_file):
                continue
            value = host.read_attr(class_file)
            if value is None:
                log.warning("usb: %s skipped: cannot read %s", rel, host.path(class_file))
                return None
            interface_classes.append(value)
    return device_instances(attrs, interface_classes)


class UsbSource(Source):
    name = "usb"

    def default_config(self) -> dict[str, Any]:
        return {
            "deviceClassWhitelist": list(DEFAULT_CLASS_WHITELIST),
            "deviceLabelFields": list(DEFAULT_LABEL_FIELDS),
        }

    def discover(self, ctx: SourceContext) -> Features:
        features = Features()
        devices: list[dict[str, str]] = []
        # Like upstream's glob: a host without USB simply has no devices.
        for entry in ctx.host.listdir(DEVICES_DIR):
            rel = f"{DEVICES_DIR}/{entry}"
            if not ctx.host.exists(f"{rel}/idProduct"):
                continue
            instances = read_device(ctx.host, rel)
            if instances:
                devices.extend(instances)
        features.add_instances(DEVICE_FEATURE, devices)
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        # Same rule as pci; USB instances never carry sriov_totalvfs, so only .present.
        return configured_device_labels(
            features.instances.get(DEVICE_FEATURE, []),
            ctx.config,
            self.name,
            ATTR_FILES,
            DEFAULT_LABEL_FIELDS,
        )


SOURCE = UsbSource()
