"""iommu source (upstream v0.6-v0.11): is an IOMMU active on this host?

Upstream's only output was the label ``iommu-enabled=true`` when
``sys/class/iommu`` has at least one entry. We also publish the raw attribute
feature ``iommu.enabled`` (element ``enabled``: ``true``/``false``) so
NodeFeatureRules can match on it. A host tree without ``sys/class`` gives no
feature at all; one with ``sys/class`` but no ``iommu`` class gives ``false``.
"""

from __future__ import annotations

from nfd.features import Features
from nfd.sources.base import Source, SourceContext

IOMMU_CLASS_DIR = "sys/class/iommu"


class IommuSource(Source):
    name = "iommu"

    def discover(self, ctx: SourceContext) -> Features:
        features = Features()
        if ctx.host.is_dir(IOMMU_CLASS_DIR):
            enabled = bool(ctx.host.listdir(IOMMU_CLASS_DIR))
        elif ctx.host.is_dir("sys/class"):
            enabled = False
        else:
            return features
        features.add_attributes("iommu.enabled", {"enabled": "true" if enabled else "false"})
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        if features.attributes.get("iommu.enabled", {}).get("enabled") == "true":
            return {"enabled": "true"}
        return {}


SOURCE = IommuSource()
