"""pci source: one ``pci.device`` instance per PCI function, labels for whitelisted classes.

Each entry of ``sys/bus/pci/devices`` becomes an instance with the mandatory
attributes (a function missing any of them is skipped) and whichever optional
ones exist. Labels are ``<devlabel>.present`` and ``<devlabel>.sriov.capable``
for functions whose class starts with a ``deviceClassWhitelist`` entry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext

log = logging.getLogger(__name__)

DEVICES_DIR = "sys/bus/pci/devices"
DEVICE_FEATURE = "pci.device"

# Also the canonical order of label fields, whatever order the config uses.
MANDATORY_ATTRS = ("class", "vendor", "device", "subsystem_vendor", "subsystem_device")
# Attribute names keep their slash, as upstream's do.
OPTIONAL_ATTRS = ("sriov_totalvfs", "iommu_group/type", "iommu/intel-iommu/version")

DEFAULT_CLASS_WHITELIST = ("03", "0b40", "12")
DEFAULT_LABEL_FIELDS = ("class", "vendor")


def pci_attr_value(raw: str, name: str) -> str:
    """A sysfs PCI attribute as upstream keeps it: no ``0x``, trimmed, class cut to 4 digits.

    The class file holds class, subclass and programming interface
    (``0x030200``); only class+subclass (``0302``) identify the kind of device.
    """
    value = raw.removeprefix("0x").strip()
    if name == "class" and len(value) > 4:
        value = value[:4]
    return value


def string_list(value: Any, where: str) -> list[str]:
    """A config list of strings; a lone string counts as one entry, anything else warns."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        odd = [v for v in value if not isinstance(v, str)]
        if odd:
            # YAML reads an unquoted 03 as the number 3: the class prefix is lost.
            log.warning("%s: %r are not strings; quote class codes, e.g. '03'", where, odd)
        return [str(v) for v in value]
    log.warning("%s: expected a list of strings, got %r; ignored", where, value)
    return []


def label_fields(
    configured: Iterable[str], canonical: Iterable[str], default: Iterable[str], where: str
) -> list[str]:
    """The configured label fields, in canonical order; unknown ones are dropped with a warning.

    With no valid field left, ``default`` is used, as upstream does.
    """
    wanted = set(configured)
    fields = [name for name in canonical if name in wanted]
    unknown = sorted(wanted - set(fields))
    if unknown:
        log.warning("%s: invalid fields %s in deviceLabelFields, ignored", where, unknown)
    if not fields:
        if wanted:
            log.warning("%s: no valid fields in deviceLabelFields, using the defaults", where)
        fields = list(default)
    return fields


def device_label(attrs: Mapping[str, str], fields: Iterable[str]) -> str:
    """``<class>_<vendor>...``: the chosen attribute values joined with ``_``."""
    return "_".join(attrs.get(name, "") for name in fields)


def class_whitelisted(device_class: str, whitelist: Iterable[str]) -> bool:
    return any(device_class.startswith(prefix.lower()) for prefix in whitelist)


def read_device(host: HostFS, rel: str) -> dict[str, str] | None:
    """Attributes of the PCI function at ``rel``; None when a mandatory one is missing."""
    attrs: dict[str, str] = {}
    for name in MANDATORY_ATTRS:
        raw = host.read_text(f"{rel}/{name}", limit=4096)
        if raw is None:
            log.debug("pci: %s skipped: no readable %s", host.path(rel), name)
            return None
        attrs[name] = pci_attr_value(raw, name)
    for name in OPTIONAL_ATTRS:
        raw = host.read_text(f"{rel}/{name}", limit=4096)
        if raw is not None:
            attrs[name] = pci_attr_value(raw, name)
    return attrs


def list_required_dir(host: HostFS, rel: str) -> list[str]:
    """Entries of a directory a source cannot work without; a clear error when it is missing."""
    if not host.is_dir(rel):
        raise FileNotFoundError(f"{host.path(rel)}: no such directory")
    return host.listdir(rel)


def device_labels(
    devices: Iterable[Mapping[str, str]], whitelist: Iterable[str], fields: list[str]
) -> dict[str, str]:
    """``<devlabel>.present`` (and ``.sriov.capable``) for every whitelisted device."""
    whitelist = list(whitelist)
    labels: dict[str, str] = {}
    for attrs in devices:
        if not class_whitelisted(attrs.get("class", ""), whitelist):
            continue
        name = device_label(attrs, fields)
        labels[f"{name}.present"] = "true"
        # Upstream checks only that the file exists: even 0 VFs counts (reference §14.16).
        if "sriov_totalvfs" in attrs:
            labels[f"{name}.sriov.capable"] = "true"
    return labels


def configured_device_labels(
    devices: Iterable[Mapping[str, str]],
    config: Mapping[str, Any],
    source: str,
    known_fields: Iterable[str],
    default_fields: Iterable[str],
) -> dict[str, str]:
    """device_labels with the ``deviceClassWhitelist`` / ``deviceLabelFields`` of a source."""
    where = f"sources.{source}"
    whitelist = string_list(config.get("deviceClassWhitelist"), f"{where}.deviceClassWhitelist")
    fields = label_fields(
        string_list(config.get("deviceLabelFields"), f"{where}.deviceLabelFields"),
        known_fields,
        default_fields,
        where,
    )
    return device_labels(devices, whitelist, fields)


class PciSource(Source):
    name = "pci"

    def default_config(self) -> dict[str, Any]:
        return {
            "deviceClassWhitelist": list(DEFAULT_CLASS_WHITELIST),
            "deviceLabelFields": list(DEFAULT_LABEL_FIELDS),
        }

    def discover(self, ctx: SourceContext) -> Features:
        features = Features()
        devices = []
        for entry in list_required_dir(ctx.host, DEVICES_DIR):
            attrs = read_device(ctx.host, f"{DEVICES_DIR}/{entry}")
            if attrs is not None:
                devices.append(attrs)
        features.add_instances(DEVICE_FEATURE, devices)
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return configured_device_labels(
            features.instances.get(DEVICE_FEATURE, []),
            ctx.config,
            self.name,
            MANDATORY_ATTRS,
            DEFAULT_LABEL_FIELDS,
        )


SOURCE = PciSource()
