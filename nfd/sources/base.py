"""What every feature source is built on: the ``Source`` interface and its context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.features import Features
from nfd.hostfs import HostFS


@dataclass(slots=True)
class SourceContext:
    """What a source gets to work with: the host, its config, the node."""

    host: HostFS
    config: Mapping[str, Any] = field(default_factory=dict)
    node_name: str = ""
    # Features discovered by every enabled source so far; label sources that
    # evaluate rules (custom) read across sources.
    features: Features = field(default_factory=Features)


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
