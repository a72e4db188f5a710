"""Device names from a ``pci.ids`` database, read as a stream.

The database is ~1.5 MB and NVIDIA's block sits in its first part; the lookup reads
line by line and stops at the end of the vendor's block (or as soon as every wanted
device is found), so neither the whole file nor a parsed copy is ever in memory.

Format (pciutils' ``pci.ids``): ``#`` comments and blank lines; a vendor line is
``<4 hex>  <name>`` at column 0; device lines start with one tab ``\\t<4 hex>  <name>``;
subsystem lines with two tabs; the class section at the end starts with ``C ``.
"""

from __future__ import annotations

from collections.abc import Iterable

from nfd.hostfs import HostFS

# Where distributions install it, in the order lspci's builds usually look.
PCI_IDS_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids", "usr/share/pci.ids")


def lookup_device_names(
    lines: Iterable[str], vendor: str, devices: Iterable[str]
) -> dict[str, str]:
    """Map each of ``devices`` (4 hex digits) of ``vendor`` to its pci.ids name.

    Unknown ids are simply absent from the result. Consumes ``lines`` only up to
    the end of the vendor's block.
    """
    vendor = vendor.lower()
    wanted = {d.lower() for d in devices}
    names: dict[str, str] = {}
    in_vendor = False
    if not wanted:
        return names
    for line in lines:
        if not line or line[0] == "#" or line.isspace():
            continue
        if line[0] != "\t":
            if in_vendor:
                break  # next vendor (or the class section): our block is over
            in_vendor = line[:4].lower() == vendor and line[4:6].isspace()
            continue
        if not in_vendor or line.startswith("\t\t"):
            continue
        device = line[1:5].lower()
        if device in wanted:
            names[device] = line[5:].strip()
            if len(names) == len(wanted):
                break
    return names


def find_pci_ids(host: HostFS) -> str | None:
    """The first pci.ids under the host prefix, as a host-relative path."""
    for rel in PCI_IDS_PATHS:
        if host.is_file(rel):
            return rel
    return None


def host_device_names(host: HostFS, vendor: str, devices: Iterable[str]) -> dict[str, str]:
    """``lookup_device_names`` on the host's pci.ids; empty if there is none."""
    rel = find_pci_ids(host)
    if rel is None:
        return {}
    try:
        # Recent pci.ids are UTF-8; old ones had Latin-1 names: never fail on bytes.
        with open(host.path(rel), encoding="utf-8", errors="replace") as stream:
            return lookup_device_names(stream, vendor, devices)
    except OSError:
        return {}
