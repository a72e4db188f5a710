"""fake source: configurable made-up features and labels, for testing NFD itself.

Not included by ``all``; enable it by name (``-feature-sources=fake``). Its
config options and defaults are upstream's: ``labels`` become labels,
``flagFeatures``, ``attributeFeatures`` and ``instanceFeatures`` become the
``fake.flag``, ``fake.attribute`` and ``fake.instance`` feature sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nfd.features import Features
from nfd.sources import Source, SourceContext


def _text(value: Any) -> str:
    """YAML scalars as the strings upstream's config would hold (``true`` -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): _text(v) for k, v in value.items()}


class FakeSource(Source):
    name = "fake"
    enabled_by_default = False

    def default_config(self) -> dict[str, Any]:
        return {
            "labels": {"fakefeature1": "true", "fakefeature2": "true", "fakefeature3": "true"},
            "flagFeatures": ["flag_1", "flag_2", "flag_3"],
            "attributeFeatures": {"attr_1": "true", "attr_2": "false", "attr_3": "10"},
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
        features.add_attributes("fake.attribute", _string_map(config.get("attributeFeatures")))
        instances = config.get("instanceFeatures") or []
        features.add_instances("fake.instance", [_string_map(i) for i in instances])
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        return _string_map(ctx.config.get("labels"))


SOURCE = FakeSource()
