"""One way in to the host: every file a source reads goes through a HostFS.

Upstream builds its host directories by plain string concatenation of a
prefix and the directory name (``/host-`` + ``sys`` = ``/host-sys``); we keep
that rule so the same DaemonSet mounts work. Unlike upstream, the files that
upstream reads without a prefix (``proc/modules``, ``proc/config.gz``,
``proc/sys/kernel/osrelease``) also go through the prefix, so a captured tree
is a complete picture of a host; with a mount-layout prefix (``/host-``) a proc
file missing under it is read from the container's /proc, as upstream does.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

log = logging.getLogger(__name__)

# Sysfs attributes are tiny; this cap keeps a hostile or odd file (a symlink
# to /dev/zero, a huge blob) from costing memory or time.
DEFAULT_READ_LIMIT = 1 << 20
READ_CHUNK = 64 * 1024
# Opening never blocks (a FIFO without a writer) and never makes a terminal ours.
OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def normalize_prefix(prefix: str) -> str:
    """Return a prefix that concatenates with ``sys``, ``proc`` and so on.

    ``/`` and ``/host-`` are used as they are; an existing directory given
    without a trailing slash (a fixture tree in a test) gets one.
    """
    if not prefix:
        return "/"
    if prefix.endswith(("/", "-")):
        return prefix
    if os.path.isdir(prefix):
        return prefix + "/"
    return prefix


class HostFS:
    """Read-only access to the host's /sys, /proc, /etc, /boot, /usr, /lib."""

    def __init__(self, prefix: str = "/") -> None:
        self.prefix = normalize_prefix(prefix)
        # A container mount layout such as upstream's DaemonSet (prefix ``/host-``:
        # /host-sys, /host-boot, /host-proc/swaps only): a proc file missing under the
        # prefix is read from the container's own /proc, as upstream reads those files
        # (cpuinfo, sys/kernel/osrelease, modules, config.gz describe the host's kernel
        # there too). A tree prefix (ending in "/", a captured fixture) never falls back.
        self._own_proc = self.prefix.endswith("-")

    def __repr__(self) -> str:
        return f"HostFS({self.prefix!r})"

    def path(self, rel: str) -> str:
        """Map a host-relative path such as ``sys/bus/pci`` to a real path.

        A plain string: pathlib would cost start-up and ~3 µs per file read.
        """
        rel = rel.lstrip("/")
        full = self.prefix + rel
        if self._own_proc and rel.startswith("proc/") and not os.path.lexists(full):
            return "/" + rel
        return full

    def read_bytes(self, rel: str, limit: int = DEFAULT_READ_LIMIT) -> bytes | None:
        """Return at most ``limit`` bytes of a file, or None if it can't be read."""
        path = self.path(rel)
        try:
            fd = os.open(path, OPEN_FLAGS)
        except (OSError, ValueError) as err:  # ValueError: a NUL in a host-supplied name
            log.debug("cannot read %s: %s", path, err)
            return None
        # Chunks, not one read of ``limit``: Python would allocate the whole limit
        # per file, and procfs/sysfs allocate a kernel buffer of the size asked.
        chunks: list[bytes] = []
        size = 0
        try:
            while size < limit:
                chunk = os.read(fd, min(limit - size, READ_CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as err:  # EISDIR, EIO from a driver, ...
            log.debug("cannot read %s: %s", path, err)
            return None
        finally:
            os.close(fd)
        return b"".join(chunks)  # one chunk (most files): the same object, no copy

    def read_text(self, rel: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        """Return a file's text (undecodable bytes replaced), or None."""
        data = self.read_bytes(rel, limit)
        if data is None:
            return None
        return data.decode("utf-8", errors="replace")

    def read_attr(self, rel: str) -> str | None:
        """Return a sysfs-style attribute with surrounding whitespace removed."""
        text = self.read_text(rel, limit=64 * 1024)
        return None if text is None else text.strip()

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path(rel))  # False for a name with a NUL

    def is_file(self, rel: str) -> bool:
        return os.path.isfile(self.path(rel))

    def is_dir(self, rel: str) -> bool:
        return os.path.isdir(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        """Sorted entry names of a directory; empty when it is missing."""
        try:
            return sorted(os.listdir(self.path(rel)))
        except (OSError, ValueError) as err:
            log.debug("cannot list %s: %s", self.path(rel), err)
            return []

    def readlink(self, rel: str) -> str | None:
        try:
            return os.readlink(self.path(rel))
        except (OSError, ValueError):
            return None


# -- files an admin puts in a directory (features.d, custom.d, source.d) -------------


class FileRefused(ValueError):
    """A file that is not read; ``reason`` says why, ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _os_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symlink loop (too many levels of symbolic links)"
    if err.errno == errno.ENOENT:
        return "does not exist (a dangling symlink?)"
    return err.strerror or str(err)


def _check_regular(path: str, st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(path, f"{_kind(st.st_mode)}, not a regular file")
    if st.st_size > limit:
        raise FileRefused(path, f"{st.st_size} bytes is over the {limit} byte limit")


def stat_regular_file(path: str, limit: int) -> os.stat_result:
    """``os.stat`` of a regular file of at most ``limit`` bytes, or FileRefused.

    Nothing is opened: opening some devices has effects (a watchdog starts).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError) as err:
        reason = _os_reason(err) if isinstance(err, OSError) else "invalid file name"
        raise FileRefused(path, reason) from None
    _check_regular(path, st, limit)
    return st


def read_regular_file(path: str, limit: int) -> bytes:
    """The whole content of a regular file of at most ``limit`` bytes, or FileRefused.

    The size is checked before anything is read (a 1 GB sparse file costs one stat),
    opening never blocks, and at most ``limit + 1`` bytes are read, so a file that
    grows while it is read is refused rather than followed.
    """
    stat_regular_file(path, limit)  # devices and FIFOs are refused before any open
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as err:
        raise FileRefused(path, f"cannot open: {_os_reason(err)}") from None
    try:
        _check_regular(path, os.fstat(fd), limit)  # replaced since the stat
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise FileRefused(path, f"cannot read: {_os_reason(err)}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise FileRefused(path, f"over the {limit} byte limit when read (the file is growing)")
    return b"".join(chunks)
