"""usb source (placeholder: discovery not implemented yet)."""

from __future__ import annotations

from nfd.sources import Source


class UsbSource(Source):
    name = "usb"


SOURCE = UsbSource()
