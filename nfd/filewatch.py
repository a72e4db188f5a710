"""Watching files and directories with inotify, for both daemons.

inotify through a few libc calls (ctypes; the stdlib has no inotify).
``FileWatcher`` watches directories, never single files, so that editors that
write a new file and rename it over the old one, and Kubernetes ConfigMap
volumes that swap a ``..data`` symlink, are seen. A directory that does not
exist yet is waited for by watching its nearest existing parent. The worker
watches its feature, hook, rule and config paths; the master its config file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

# Inside a watched directory: every way a file can appear, change or go.
DIR_MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
)
# On a parent waiting for a missing directory: only entries coming and going,
# so busy directories such as /etc cost no wakeups for file writes.
PARENT_MASK = (
    IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)
# Events after which the set of watched directories may have to change.
STRUCTURE_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_UNMOUNT
    | IN_IGNORED
    | IN_Q_OVERFLOW
)

_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


@dataclass(frozen=True)
class InotifyEvent:
    wd: int
    mask: int
    name: str


def parse_inotify_events(buffer: bytes) -> list[InotifyEvent]:
    """Split what read(2) returned from an inotify fd into events."""
    events = []
    offset = 0
    while offset + _EVENT_HEADER.size <= len(buffer):
        wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(buffer, offset)
        offset += _EVENT_HEADER.size
        raw = buffer[offset : offset + length]
        offset += length
        name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        events.append(InotifyEvent(wd, mask, name))
    return events


class Inotify:
    """The three inotify system calls, on a non-blocking fd."""

    def __init__(self) -> None:
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(libc_name, use_errno=True)
        for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch"):
            if not hasattr(self._libc, name):
                raise OSError(errno.ENOSYS, f"libc has no {name}")
        self._libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd

    def add_watch(self, path: str, mask: int) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_add_watch {path}: {os.strerror(code)}")
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        # Fails harmlessly (EINVAL) when the kernel already dropped the watch.
        self._libc.inotify_rm_watch(self.fd, wd)

    def read(self) -> list[InotifyEvent]:
        events: list[InotifyEvent] = []
        while True:
            try:
                buffer = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return events
            if not buffer:
                return events
            events.extend(parse_inotify_events(buffer))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class WatchTarget:
    """A directory (``is_file`` False) or a file whose changes mean ``tag``.

    ``depth`` 1 also watches the directory's first-level sub-directories
    (custom.d reads those too).
    """

    path: str
    tag: str
    is_file: bool = False
    depth: int = 0

    @property
    def directory(self) -> str:
        return os.path.dirname(self.path) if self.is_file else self.path


def nearest_existing_dir(path: str) -> str:
    """``path`` if it is a directory, else its closest existing ancestor."""
    current = path
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def tags_for_event(
    targets: Iterable[WatchTarget], directory: str, name: str, mask: int
) -> set[str]:
    """Which targets an event in ``directory`` (about entry ``name``) concerns."""
    full = os.path.join(directory, name) if name else directory
    tags: set[str] = set()
    for target in targets:
        if target.is_file:
            if full == target.path or _is_within(target.path, full):
                tags.add(target.tag)
            elif directory == target.directory and name.startswith(".."):
                # A ConfigMap volume replaces its files by swapping ..data.
                tags.add(target.tag)
            continue
        if directory == target.path:
            tags.add(target.tag)
        elif target.depth >= 1 and os.path.dirname(directory) == target.path:
            tags.add(target.tag)
        elif _is_within(target.path, full):
            # The directory itself, or one of its parents, appeared or went.
            tags.add(target.tag)
    return tags


class FileWatcher:
    """inotify watches for a set of targets; ``read`` returns the tags that changed."""

    def __init__(self, inotify: Inotify | None = None) -> None:
        self._inotify = inotify or Inotify()
        self._targets: list[WatchTarget] = []
        self._wd_paths: dict[int, set[str]] = {}
        self._path_wd: dict[str, tuple[int, int]] = {}  # path -> (wd, mask)

    def fileno(self) -> int:
        return self._inotify.fd

    @property
    def watched(self) -> dict[str, int]:
        """Watched directory -> mask (for tests and debug logs)."""
        return {path: mask for path, (_wd, mask) in self._path_wd.items()}

    def set_targets(self, targets: Iterable[WatchTarget]) -> None:
        self._targets = [
            WatchTarget(os.path.normpath(os.path.abspath(t.path)), t.tag, t.is_file, t.depth)
            for t in targets
        ]
        self.refresh()

    def _desired(self) -> dict[str, int]:
        desired: dict[str, int] = {}
        for target in self._targets:
            directory = target.directory
            if os.path.isdir(directory):
                desired[directory] = desired.get(directory, 0) | DIR_MASK
                if target.depth >= 1 and not target.is_file:
                    for sub in _subdirs(directory):
                        desired[sub] = desired.get(sub, 0) | DIR_MASK
            else:
                parent = nearest_existing_dir(directory)
                desired[parent] = desired.get(parent, 0) | PARENT_MASK
        return desired

    def refresh(self) -> None:
        """Bring the watches in line with what exists now."""
        desired = self._desired()
        for path in list(self._path_wd):
            if path not in desired:
                self._unwatch(path)
        for path, mask in desired.items():
            current = self._path_wd.get(path)
            if current is not None and current[1] == mask:
                continue
            try:
                wd = self._inotify.add_watch(path, mask)
            except OSError as err:
                # Gone again (a race with its removal): the parent's event retries.
                # Anything else (no permission, out of watches) is worth a warning.
                level = (
                    logging.DEBUG if err.errno in (errno.ENOENT, errno.ENOTDIR) else logging.WARNING
                )
                log.log(level, "cannot watch %s: %s", path, err)
                self._unwatch(path)
                continue
            if current is not None and current[0] != wd:
                self._unwatch(path)
            self._path_wd[path] = (wd, mask)
            self._wd_paths.setdefault(wd, set()).add(path)

    def _unwatch(self, path: str) -> None:
        entry = self._path_wd.pop(path, None)
        if entry is None:
            return
        wd = entry[0]
        paths = self._wd_paths.get(wd, set())
        paths.discard(path)
        if not paths:
            self._wd_paths.pop(wd, None)
            self._inotify.rm_watch(wd)

    def read(self) -> set[str]:
        tags: set[str] = set()
        restructure = False
        for event in self._inotify.read():
            if event.mask & IN_Q_OVERFLOW:
                log.warning("inotify queue overflowed; treating every watched path as changed")
                tags |= {t.tag for t in self._targets}
                restructure = True
                continue
            if event.mask & STRUCTURE_MASK:
                restructure = True
            if event.mask & IN_IGNORED:
                # The kernel dropped this watch (directory deleted or unmounted).
                for path in self._wd_paths.pop(event.wd, set()):
                    self._path_wd.pop(path, None)
            for directory in self._wd_paths.get(event.wd, set()):
                tags |= tags_for_event(self._targets, directory, event.name, event.mask)
        if restructure:
            self.refresh()
        return tags

    def close(self) -> None:
        self._inotify.close()


def _subdirs(directory: str) -> list[str]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    subdirs = []
    for entry in entries:
        try:
            if entry.is_dir() and not entry.name.startswith("."):
                subdirs.append(entry.path)
        except OSError:
            continue
    return sorted(subdirs)
