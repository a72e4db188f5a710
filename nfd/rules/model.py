"""The loaded rule: :class:`Rule` and its :class:`FeatureTerm` entries.

Both loaders (``schema`` for the v1alpha1 format, ``legacy`` for ``matchOn``) build
these, and the engine runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.rules.errors import RuleError
from nfd.rules.expression import MatchExpression


@dataclass(frozen=True, slots=True)
class FeatureTerm:
    """One ``matchFeatures`` entry: a feature set and what to require of it."""

    feature: str
    match_expressions: dict[str, MatchExpression] | None = None
    match_name: MatchExpression | None = None


@dataclass(slots=True)
class Rule:
    """One rule. Mutable: the loader fills it field by field."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    labels_template: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    vars_template: str = ""
    # Each taint: {"key", "value", "effect"}.
    taints: list[dict[str, str]] = field(default_factory=list)
    extended_resources: dict[str, str] = field(default_factory=dict)
    match_features: list[FeatureTerm] = field(default_factory=list)
    # Each entry is one matchAny element's matchFeatures.
    match_any: list[list[FeatureTerm]] = field(default_factory=list)
    # Where the rule came from, for messages ("rules.yaml", "nfd-worker.conf").
    origin: str = ""
    # Compiled templates, filled on first use; not compared, not shown.
    _templates: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def kind_of(value: Any) -> str:
    """What a document value is, for messages ("a mapping", "a list", "int")."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def scalar(value: Any, where: str) -> str:
    """A YAML scalar as the string a Go string field would hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise RuleError(f"{where}: expected a string, got {kind_of(value)}")
