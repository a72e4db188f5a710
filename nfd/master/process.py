"""Process-level safety of nfd-master: stop on SIGTERM even when frozen, file
descriptors for many connections, and heap memory handed back after a flood.

SIGTERM and SIGINT get a handler of their own rather than the event loop's
``add_signal_handler``: that one runs only when the loop runs, so a loop stuck in a
callback never saw the signal and only SIGKILL stopped the master. The handler asks
for a graceful stop and arms ``faulthandler``'s watchdog, a C thread that needs
neither the loop nor the GIL: if the stop has not finished within the grace, it
prints every thread's stack (where it was stuck) and exits with status 1. As PID 1
in a container, where a signal's default action does nothing, this is the only way
out, so it is installed there too. A second signal exits at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("nfd-master")

# Time from SIGTERM to a forced exit: the gRPC server's own grace is 1 s.
SHUTDOWN_GRACE_S = 5.0


class ProcessGuard:
    """SIGTERM/SIGINT handling for a daemon whose main loop may be stuck."""

    def __init__(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        self.grace = grace
        self.requested = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when a stop is requested (now, if it already was)."""
        with self._lock:
            self._callbacks.append(callback)
            already = self.requested.is_set()
        if already:
            callback()

    def request_stop(self) -> None:
        """Ask for a graceful stop (a signal, or a lost leader lease); thread-safe.
        The watchdog stays armed until the process is gone: interpreter exit counts."""
        with self._lock:
            if self.requested.is_set():
                return
            self.requested.set()
            # Armed before anything that could block: from here on the exit is certain.
            faulthandler.dump_traceback_later(self.grace, exit=True, file=sys.stderr)
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            os.write(2, f"nfd-master: second {name}, exiting now\n".encode())
            os._exit(128 + signum)
        self.request_stop()
        log.info("%s: stopping (forced exit after %.0f s)", name, self.grace)


def raise_open_files_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit: every worker holds a connection, and a
    flood of idle ones must not starve the legitimate workers of descriptors.
    Returns the (old, new) soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is not a valid soft limit on Linux; 2**20 is nr_open's default.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as err:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, err)
        return soft, soft
    return soft, target


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> bool:
    """Hand free heap pages back to the kernel. After a connection flood, gRPC's
    buffers are freed but glibc keeps the pages in its arenas (RSS stayed 160 MB
    higher); malloc_trim returns them. False where there is no glibc."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True
