"""network source: ``network.device`` (physical) and ``network.virtual`` instances.

An interface under ``sys/class/net`` is physical when it has a ``device``
entry (a link to its bus device) that resolves; otherwise it is virtual (lo,
bridges, veths, tunnels). Attributes that cannot be read, such as ``speed`` of
a link that is down (EINVAL), are left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext
from nfd.sources.pci import list_required_dir

log = logging.getLogger(__name__)

NET_DIR = "sys/class/net"
DEVICE_FEATURE = "network.device"
VIRTUAL_FEATURE = "network.virtual"

# Files read per interface; the attribute name is the file's basename.
DEVICE_ATTR_FILES = (
    "operstate",
    "speed",
    "device/sriov_numvfs",
    "device/sriov_totalvfs",
    "mtu",
)
VIRTUAL_ATTR_FILES = ("operstate", "speed", "mtu")

# The bonding driver's control file lives among the interfaces; it is not one.
NOT_INTERFACES = frozenset({"bonding_masters"})


def read_interface(host: HostFS, name: str, attr_files: Iterable[str]) -> dict[str, str]:
    attrs = {"name": name}
    for rel in attr_files:
        value = host.read_attr(f"{NET_DIR}/{name}/{rel}")
        if value is not None:
            attrs[rel.rpartition("/")[2]] = value
    return attrs


def is_physical(host: HostFS, name: str) -> bool | None:
    """True with a resolvable ``device`` link, False without; None if it can't be told."""
    try:
        os.stat(host.path(f"{NET_DIR}/{name}/device"))
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("network: cannot tell whether %s is physical: %s", name, err)
        return None
    return True


def positive_int(value: str | None) -> bool:
    try:
        return value is not None and int(value) > 0
    except ValueError:
        return False


def sriov_labels(devices: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """``sriov.capable`` / ``sriov.configured`` when any physical interface has VFs (> 0)."""
    labels: dict[str, str] = {}
    for attrs in devices:
        if positive_int(attrs.get("sriov_totalvfs")):
            labels["sriov.capable"] = "true"
        if positive_int(attrs.get("sriov_numvfs")):
            labels["sriov.configured"] = "true"
    return labels


class NetworkSource(Source):
    name = "network"

    def discover(self, ctx: SourceContext) -> Features:
        physical: list[dict[str, str]] = []
        virtual: list[dict[str, str]] = []
        for name in list_required_dir(ctx.host, NET_DIR):
            if name in NOT_INTERFACES:
                continue
            kind = is_physical(ctx.host, name)
            if kind is True:
                physical.append(read_interface(ctx.host, name, DEVICE_ATTR_FILES))
            elif kind is False:
                virtual.append(read_interface(ctx.host, name, VIRTUAL_ATTR_FILES))
        features = Features()
        features.add_instances(DEVICE_FEATURE, physical)
        features.add_instances(VIRTUAL_FEATURE, virtual)
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return sriov_labels(features.instances.get(DEVICE_FEATURE, []))


SOURCE = NetworkSource()
