"""system source: os-release, DMI ids and the node name.

Unlike upstream, a host without ``etc/os-release`` falls back to
``usr/lib/os-release``, the file ``etc/os-release`` links to on most
distributions (os-release(5) names it the fallback).
"""

from __future__ import annotations

import re

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources.base import Source, SourceContext

OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")

# Keys upstream reads from sys/devices/virtual/dmi/id; serial numbers and
# product_uuid are left out on purpose (they identify one machine).
DMI_ID_ATTRIBUTES = (
    "bios_date",
    "bios_vendor",
    "bios_version",
    "board_asset_tag",
    "board_name",
    "board_vendor",
    "board_version",
    "chassis_asset_tag",
    "chassis_type",
    "chassis_vendor",
    "chassis_version",
    "product_family",
    "product_name",
    "product_sku",
    "product_version",
    "sys_vendor",
)

OS_RELEASE_LABEL_KEYS = ("ID", "VERSION_ID", "VERSION_ID.major", "VERSION_ID.minor")

# ``KEY=value`` (a non-empty value); and VERSION_ID's leading ``major[.minor]``.
_OS_RELEASE_LINE = re.compile(r"(\w+)=(.+)")
_VERSION_ID = re.compile(r"(\d+)(\.(\d+))?(\..*)?$")


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5) text the way upstream does, plus VERSION_ID parts."""
    release: dict[str, str] = {}
    for line in text.splitlines():
        match = _OS_RELEASE_LINE.match(line)
        if match:
            release[match[1]] = match[2].strip().strip("\"'")
    version_id = release.get("VERSION_ID")
    if version_id:
        parts = _VERSION_ID.match(version_id)
        if parts:
            release["VERSION_ID.major"] = parts[1]
            if parts[3]:
                release["VERSION_ID.minor"] = parts[3]
    return release


def read_host_file(host: HostFS, rel: str) -> str | None:
    """Read ``rel``, resolving an absolute symlink inside the host prefix.

    ``/host-etc/os-release -> /usr/lib/os-release`` names the host's file; the
    kernel would resolve it against the worker's own root and read the wrong one.
    """
    for _ in range(8):  # a bound, in case of a link loop
        target = host.readlink(rel)
        if target is None or not target.startswith("/"):
            break
        rel = target.lstrip("/")
    return host.read_text(rel)


class SystemSource(Source):
    name = "system"

    def discover(self, ctx: SourceContext) -> Features:
        features = Features()
        for rel in OS_RELEASE_PATHS:
            text = read_host_file(ctx.host, rel)
            if text is not None:
                features.add_attributes("system.osrelease", parse_os_release(text))
                break
        dmi = {}
        for attr in DMI_ID_ATTRIBUTES:
            value = ctx.host.read_attr(f"sys/devices/virtual/dmi/id/{attr}")
            if value is not None:
                dmi[attr] = value
        features.add_attributes("system.dmiid", dmi)
        features.add_attributes("system.name", {"nodename": ctx.node_name})
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        release = features.attributes.get("system.osrelease", {})
        return {
            f"os_release.{key}": release[key] for key in OS_RELEASE_LABEL_KEYS if key in release
        }


SOURCE = SystemSource()
