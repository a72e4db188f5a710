"""storage source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class StorageSource(Source):
    name = "storage"


SOURCE = StorageSource()
