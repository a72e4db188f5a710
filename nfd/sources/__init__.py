"""Feature sources: one module per source, each behind the small ``Source`` interface.

A source may discover raw features (``discover``) and may turn features into
labels (``labels``). Label keys without a ``/`` are built-in style: the worker
prefixes them with ``feature.node.kubernetes.io/<source>-``. Sources whose
``prefix_labels`` is False (local, custom) keep their keys as written; the
master adds the default namespace to unprefixed keys later, as upstream does.
"""

from __future__ import annotations

import sys

from nfd.features import Features
from nfd.log import get_logger
from nfd.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from nfd.hostfs import HostFS

log = get_logger(__name__)


class SourceContext(Record):
    """What a source gets to work with: the host, its config, the node."""

    __slots__ = ("host", "config", "node_name", "features")

    def __init__(
        self,
        host: HostFS,
        config: Mapping[str, Any] | None = None,
        node_name: str = "",
        features: Features | None = None,
    ) -> None:
        self.host = host
        self.config: Mapping[str, Any] = {} if config is None else config
        self.node_name = node_name
        # Features discovered by every enabled source so far; label sources that
        # evaluate rules (custom) read across sources.
        self.features = Features() if features is None else features


class Source:
    """Base class of a feature/label source. Subclasses override what they need."""

    name: str = ""
    # Lower runs first; a later source overrides an earlier one's equal keys.
    priority: int = 0
    # Built-in label keys get ``feature.node.kubernetes.io/<name>-``.
    prefix_labels: bool = True
    # ``all`` in featureSources/labelSources includes this source.
    enabled_by_default: bool = True

    def default_config(self) -> dict[str, Any]:
        return {}

    def discover(self, ctx: SourceContext) -> Features:
        return Features()

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return {}


# Every source module, in upstream's naming. Each defines ``SOURCE``.
SOURCE_NAMES = (
    "cpu",
    "custom",
    "fake",
    "gpu",
    "iommu",
    "kernel",
    "local",
    "memory",
    "network",
    "pci",
    "storage",
    "system",
    "usb",
)


def get_source(name: str) -> Source:
    if name not in SOURCE_NAMES:
        raise KeyError(f"unknown source {name!r}")
    module_name = f"nfd.sources.{name}"
    module = sys.modules.get(module_name)
    if module is None:
        __import__(module_name)  # importlib.import_module, without importing importlib
        module = sys.modules[module_name]
    source: Source = module.SOURCE
    return source


def all_sources() -> dict[str, Source]:
    return {name: get_source(name) for name in SOURCE_NAMES}


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
