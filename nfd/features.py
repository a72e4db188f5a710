"""The raw feature model shared by discovery, rules and the master.

Upstream keys every feature set ``<source>.<featureset>`` and knows three
kinds: flags (a set of names), attributes (name -> string) and instances (a
list of attribute maps). ``to_dict`` and ``from_dict`` speak the JSON shape of
upstream's NodeFeature ``spec.features`` and ``nfd export features``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class FeatureFormatError(ValueError):
    """A features document does not have upstream's shape."""


@dataclass(slots=True)
class Features:
    """Flags, attributes and instances, each keyed ``<source>.<featureset>``."""

    flags: dict[str, set[str]] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    instances: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # Not a feature: where the local source's labels came from (nfd.origins), sent
    # beside the features and never as one; left out of comparisons and of to_dict.
    origins: dict[str, tuple[str, ...]] | None = field(default=None, compare=False, repr=False)

    # -- building -----------------------------------------------------------

    def add_flags(self, name: str, elements: Iterable[str]) -> None:
        self.flags.setdefault(name, set()).update(elements)

    def add_attributes(self, name: str, elements: Mapping[str, str]) -> None:
        self.attributes.setdefault(name, {}).update(elements)

    def add_instances(self, name: str, elements: Iterable[Mapping[str, str]]) -> None:
        self.instances.setdefault(name, []).extend(dict(e) for e in elements)

    def merge(self, other: Features) -> None:
        """Add every feature set of ``other``; later sets replace earlier ones."""
        for name, flags in other.flags.items():
            self.flags[name] = set(flags)
        for name, attrs in other.attributes.items():
            self.attributes[name] = dict(attrs)
        for name, insts in other.instances.items():
            self.instances[name] = [dict(i) for i in insts]
        if other.origins:
            self.origins = {**(self.origins or {}), **other.origins}

    def names(self) -> set[str]:
        return set(self.flags) | set(self.attributes) | set(self.instances)

    def is_empty(self) -> bool:
        return not (self.flags or self.attributes or self.instances)

    def copy(self) -> Features:
        out = Features()
        out.merge(self)
        return out

    # -- wire shape ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Upstream's JSON shape, deterministic (sorted sets and keys)."""
        return {
            "flags": {
                name: {"elements": {e: {} for e in sorted(elems)}}
                for name, elems in sorted(self.flags.items())
            },
            "attributes": {
                name: {"elements": dict(sorted(elems.items()))}
                for name, elems in sorted(self.attributes.items())
            },
            "instances": {
                name: {"elements": [{"attributes": dict(sorted(i.items()))} for i in insts]}
                for name, insts in sorted(self.instances.items())
            },
        }

    @classmethod
    def from_dict(cls, data: Any) -> Features:
        """Parse upstream's shape; raise FeatureFormatError naming the bad field."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise FeatureFormatError(f"features: expected a mapping, got {type(data).__name__}")
        unknown = set(data) - {"flags", "attributes", "instances"}
        if unknown:
            raise FeatureFormatError(f"features: unknown keys {sorted(unknown)}")
        out = cls()
        for name, body in _sets(data, "flags"):
            elements = _elements(body, f"flags.{name}")
            if not isinstance(elements, Mapping):
                raise FeatureFormatError(f"flags.{name}.elements: expected a mapping")
            out.flags[name] = {str(k) for k in elements}
        for name, body in _sets(data, "attributes"):
            elements = _elements(body, f"attributes.{name}")
            if not isinstance(elements, Mapping):
                raise FeatureFormatError(f"attributes.{name}.elements: expected a mapping")
            out.attributes[name] = _scalars(elements)
        for name, body in _sets(data, "instances"):
            elements = _elements(body, f"instances.{name}")
            if not isinstance(elements, list):
                raise FeatureFormatError(f"instances.{name}.elements: expected a list")
            insts = []
            for n, inst in enumerate(elements):
                attrs = inst.get("attributes") if isinstance(inst, Mapping) else None
                if attrs is None:
                    attrs = {}
                if not isinstance(attrs, Mapping):
                    raise FeatureFormatError(
                        f"instances.{name}.elements[{n}].attributes: expected a mapping"
                    )
                insts.append(_scalars(attrs))
            out.instances[name] = insts
        return out


def _sets(data: Mapping[str, Any], kind: str) -> list[tuple[str, Any]]:
    section = data.get(kind) or {}
    if not isinstance(section, Mapping):
        raise FeatureFormatError(f"{kind}: expected a mapping")
    return [(str(k), v) for k, v in section.items()]


def _elements(body: Any, where: str) -> Any:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise FeatureFormatError(f"{where}: expected a mapping with 'elements'")
    elements = body.get("elements")
    return {} if elements is None else elements


def _scalars(elements: Mapping[Any, Any]) -> dict[str, str]:
    # Parsed JSON has string keys and, nearly always, string values: then a plain copy
    # (a NodeFeature's kernel.config alone has thousands of elements).
    if all(type(k) is str and type(v) is str for k, v in elements.items()):
        return dict(elements)
    return {str(k): _scalar(v) for k, v in elements.items()}


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)
