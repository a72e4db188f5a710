"""cpu source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class CpuSource(Source):
    name = "cpu"


SOURCE = CpuSource()
