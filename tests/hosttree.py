"""Build small host trees (sys, proc, etc ...) for source tests.

A spec maps a host-relative path to its content: a str (a file), a
``Link(target)`` (a symlink, as sysfs is full of them) or ``None`` (an empty
directory).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nfd.hostfs import HostFS


@dataclass(frozen=True)
class Link:
    target: str


def write_tree(root: Path, spec: Mapping[str, str | Link | None]) -> Path:
    for rel, content in spec.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            path.symlink_to(content.target)
        else:
            path.write_text(content)
    return root


def host_tree(root: Path, spec: Mapping[str, str | Link | None]) -> HostFS:
    """Write ``spec`` under ``root`` and return a HostFS with ``root`` as prefix."""
    write_tree(root, spec)
    return HostFS(str(root) + "/")
