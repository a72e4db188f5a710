"""local source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class LocalSource(Source):
    name = "local"
    priority = 20
    prefix_labels = False


SOURCE = LocalSource()
