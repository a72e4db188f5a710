"""iommu source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class IommuSource(Source):
    name = "iommu"


SOURCE = IommuSource()
