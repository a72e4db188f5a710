"""network source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class NetworkSource(Source):
    name = "network"


SOURCE = NetworkSource()
