"""fake source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class FakeSource(Source):
    name = "fake"
    enabled_by_default = False


SOURCE = FakeSource()
