"""Feature sources: one module per source, each behind the small ``Source`` interface.

A source may discover raw features (``discover``) and may turn features into
labels (``labels``). Label keys without a ``/`` are built-in style: the worker
prefixes them with ``feature.node.kubernetes.io/<source>-``. Sources whose
``prefix_labels`` is False (local, custom) keep their keys as written; the
master adds the default namespace to unprefixed keys later, as upstream does.
"""

from __future__ import annotations

import logging

# Bound before the source modules load: a module that imports these from
# nfd.sources rather than nfd.sources.base finds them already here.
from nfd.sources.base import Source, SourceContext

# isort: split
from nfd.sources import (
    cpu,
    custom,
    fake,
    gpu,
    iommu,
    kernel,
    local,
    memory,
    network,
    pci,
    storage,
    system,
    usb,
)

__all__ = ["SOURCES", "SOURCE_NAMES", "Source", "SourceContext", "get_source", "select_sources"]

log = logging.getLogger(__name__)

# Every source, by upstream's name.
SOURCES: dict[str, Source] = {
    module.SOURCE.name: module.SOURCE
    for module in (
        cpu,
        custom,
        fake,
        gpu,
        iommu,
        kernel,
        local,
        memory,
        network,
        pci,
        storage,
        system,
        usb,
    )
}
SOURCE_NAMES = tuple(sorted(SOURCES))


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}") from None


def all_sources() -> dict[str, Source]:
    return dict(SOURCES)


def select_sources(requested: list[str], what: str = "sources") -> list[str]:
    """Resolve upstream's source list syntax: names, ``all`` and ``-name``.

    Unknown names are logged and skipped, as upstream does.
    """
    selected: list[str] = []
    for entry in requested:
        entry = entry.strip()
        if not entry:
            continue
        if entry == "all":
            for name in SOURCE_NAMES:
                if get_source(name).enabled_by_default and name not in selected:
                    selected.append(name)
        elif entry.startswith("-"):
            name = entry[1:]
            if name in selected:
                selected.remove(name)
            elif name not in SOURCE_NAMES:
                log.warning("%s: unknown source %r ignored", what, name)
        elif entry in SOURCE_NAMES:
            if entry not in selected:
                selected.append(entry)
        else:
            log.warning("%s: unknown source %r ignored", what, entry)
    return sorted(selected)
