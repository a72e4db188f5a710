"""What makes the worker look again: kernel uevents and file changes.

Both watchers hand the daemon a file descriptor to wait on, so an idle worker
sleeps in one ``select`` and wakes only when something happened (or the
safety-net timer is due). Nothing here polls.

- ``UeventWatcher``: kernel uevents over netlink through pyudev, source
  ``kernel`` (needs no udevd, so it works in a container). Each event is
  mapped to the feature sources it can change (``UEVENT_SOURCES``).
- ``FileWatcher`` (nfd/filewatch.py, shared with the master): inotify on the
  directories of the worker's feature, hook, rule and config paths.
- ``Debouncer``: turns a burst of events into one rediscovery.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterable
from typing import Any

from nfd.filewatch import FileWatcher, WatchTarget

__all__ = ["ALL_SOURCES", "Debouncer", "FileWatcher", "UeventWatcher", "WatchTarget"]

log = logging.getLogger(__name__)

# -- uevents -----------------------------------------------------------------

# Which feature sources a uevent on a subsystem can change. Labels are always
# recomputed from all features after a rediscovery, so the custom and local
# label sources (rules reading every feature) follow without being listed.
UEVENT_SOURCES: dict[str, tuple[str, ...]] = {
    # A PCI device or driver change: the device list, GPUs, IOMMU groups and
    # the kernel modules loaded for it.
    "pci": ("pci", "gpu", "iommu", "kernel"),
    "usb": ("usb", "kernel"),
    "net": ("network",),
    "block": ("storage",),
    # A GPU driver's DRM device appears after the module binds.
    "drm": ("gpu",),
    # Any module load or unload changes kernel.loadedmodule.
    "module": ("kernel",),
}

# Module names whose loading also means the GPU picture changed.
GPU_MODULE_PREFIXES = ("nvidia",)

UEVENT_ACTIONS = frozenset({"add", "remove", "change", "move", "bind", "unbind"})

# Stands for "everything": events were lost, rediscover all sources.
ALL_SOURCES = "*"


def sources_for_uevent(action: str | None, subsystem: str | None, sys_name: str | None) -> set[str]:
    """The feature sources a uevent can affect; empty for events we ignore."""
    if action not in UEVENT_ACTIONS or not subsystem:
        return set()
    affected = set(UEVENT_SOURCES.get(subsystem, ()))
    if subsystem == "module" and (sys_name or "").startswith(GPU_MODULE_PREFIXES):
        affected.add("gpu")
    return affected


class UeventWatcher:
    """Kernel uevents from netlink; ``fileno`` for select, ``read`` to drain."""

    # Large enough that a burst (a PCI bus rescan, a hundred VFs) is not lost.
    RECEIVE_BUFFER = 4 << 20

    def __init__(self, monitor: Any) -> None:
        self._monitor = monitor

    @classmethod
    def open(cls) -> UeventWatcher:
        """Open the netlink socket; OSError/ImportError when unavailable."""
        import pyudev

        context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(context, source="kernel")
        try:
            monitor.set_receive_buffer_size(cls.RECEIVE_BUFFER)
        except Exception as err:  # needs CAP_NET_ADMIN above rmem_max; not fatal
            log.debug("uevent receive buffer left at the default: %s", err)
        monitor.start()
        return cls(monitor)

    def fileno(self) -> int:
        return int(self._monitor.fileno())

    def read(self) -> set[str]:
        """Drain pending events; return the sources they affect.

        A socket overrun means events were lost, so everything is rediscovered.
        """
        affected: set[str] = set()
        while True:
            try:
                device = self._monitor.poll(timeout=0)
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    log.warning("uevents were lost (socket overrun); rediscovering everything")
                    affected.add(ALL_SOURCES)
                    continue
                raise
            if device is None:
                return affected
            found = sources_for_uevent(device.action, device.subsystem, device.sys_name)
            if found:
                log.debug(
                    "uevent %s %s %s -> %s",
                    device.action,
                    device.subsystem,
                    device.sys_name,
                    ",".join(sorted(found)),
                )
            affected |= found

    def close(self) -> None:
        # pyudev closes the socket when the monitor is collected; drop it now.
        self._monitor = None


# -- debouncing --------------------------------------------------------------


class Debouncer:
    """Collect items until ``quiet`` seconds pass without a new one.

    ``max_delay`` bounds the wait under a steady stream of events, so a noisy
    device cannot postpone a rediscovery forever.
    """

    def __init__(self, quiet: float = 0.1, max_delay: float = 0.5) -> None:
        self.quiet = quiet
        self.max_delay = max_delay
        self._items: set[str] = set()
        self._first: float | None = None
        self._last: float | None = None

    def add(self, items: Iterable[str], now: float) -> None:
        items = set(items)
        if not items:
            return
        self._items |= items
        if self._first is None:
            self._first = now
        self._last = now

    def deadline(self) -> float | None:
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def take(self, now: float) -> set[str]:
        """The collected items if their time has come (then reset), else empty."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return set()
        items, self._items = self._items, set()
        self._first = self._last = None
        return items
