"""memory source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class MemorySource(Source):
    name = "memory"


SOURCE = MemorySource()
