"""custom source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class CustomSource(Source):
    name = "custom"
    priority = 10
    prefix_labels = False


SOURCE = CustomSource()
