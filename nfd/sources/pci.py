"""pci source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class PciSource(Source):
    name = "pci"


SOURCE = PciSource()
