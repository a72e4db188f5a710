"""kernel source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class KernelSource(Source):
    name = "kernel"


SOURCE = KernelSource()
