"""fake source: configurable made-up features and labels, for testing NFD itself.

Not included by ``all``; enable it by name (``-feature-sources=fake``). Its
config options and defaults are upstream's: ``labels`` become labels,
``flagFeatures``, ``attributeFeatures`` and ``instanceFeatures`` become the
``fake.flag``, ``fake.attribute`` and ``fake.instance`` feature sets.

Upstream decodes the config over its defaults, and Go's decoder adds a map's
keys to the default map while it replaces lists. So user ``labels`` and
``attributeFeatures`` come on top of the default entries, and lists replace
theirs. The two maps are therefore empty in ``default_config`` (free-form
keys, not options to check) and merged with the defaults here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nfd.features import Features
from nfd.sources.base import Source, SourceContext


def _text(value: Any) -> str:
    """YAML scalars as the strings upstream's config would hold (``true`` -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _text(v) for k, v in value.items()}


DEFAULT_LABELS = {"fakefeature1": "true", "fakefeature2": "true", "fakefeature3": "true"}
DEFAULT_ATTRIBUTES = {"attr_1": "true", "attr_2": "false", "attr_3": "10"}


class FakeSource(Source):
    name = "fake"
    enabled_by_default = False

    def default_config(self) -> dict[str, Any]:
        return {
            "labels": {},
            "flagFeatures": ["flag_1", "flag_2", "flag_3"],
            "attributeFeatures": {},
            "instanceFeatures": [
                {
                    "name": "instance_1",
                    "attr_1": "true",
                    "attr_2": "false",
                    "attr_3": "10",
                    "attr_4": "foobar",
                },
                {"name": "instance_2", "attr_1": "true", "attr_2": "true", "attr_3": "100"},
                {"name": "instance_3"},
            ],
        }

    def discover(self, ctx: SourceContext) -> Features:
        config = ctx.config
        features = Features()
        features.add_flags("fake.flag", [_text(f) for f in config.get("flagFeatures") or []])
        attributes = {**DEFAULT_ATTRIBUTES, **_string_map(config.get("attributeFeatures"))}
        features.add_attributes("fake.attribute", attributes)
        instances = config.get("instanceFeatures") or []
        features.add_instances("fake.instance", [_string_map(i) for i in instances])
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return {**DEFAULT_LABELS, **_string_map(ctx.config.get("labels"))}


SOURCE = FakeSource()
