"""gpu source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class GpuSource(Source):
    name = "gpu"


SOURCE = GpuSource()
