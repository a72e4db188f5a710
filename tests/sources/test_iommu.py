"""iommu source: v0.6's iommu-enabled label plus the iommu.enabled raw feature."""

from __future__ import annotations

from pathlib import Path

from nfd.hostfs import HostFS
from nfd.sources import SourceContext, select_sources
from nfd.sources.iommu import SOURCE
from nfd.worker.config import build_config
from nfd.worker.discovery import run_discovery
from tests.fixture_paths import PROCFS

LABEL = "feature.node.kubernetes.io/iommu-enabled"


def tree(root: Path, *dirs: str) -> HostFS:
    root.mkdir(parents=True, exist_ok=True)
    for rel in dirs:
        (root / rel).mkdir(parents=True, exist_ok=True)
    return HostFS(str(root) + "/")


def iommu_only_labels(host: HostFS) -> dict[str, str]:
    config = build_config({"core": {"featureSources": ["iommu"], "labelSources": ["iommu"]}})
    result = run_discovery(host, config, "node")
    assert result.warnings == []
    return result.labels


def test_iommu_units_give_the_label(tmp_path):
    host = tree(tmp_path, "sys/class/iommu/dmar0", "sys/class/iommu/dmar1")
    features = SOURCE.discover(SourceContext(host))
    assert features.attributes["iommu.enabled"] == {"enabled": "true"}
    assert iommu_only_labels(host) == {LABEL: "true"}


def test_empty_iommu_class_gives_false_and_no_label(tmp_path):
    host = tree(tmp_path, "sys/class/iommu")
    features = SOURCE.discover(SourceContext(host))
    assert features.attributes["iommu.enabled"] == {"enabled": "false"}
    assert iommu_only_labels(host) == {}


def test_missing_iommu_class_is_not_a_crash(tmp_path):
    host = tree(tmp_path, "sys/class/net")
    assert SOURCE.discover(SourceContext(host)).attributes["iommu.enabled"] == {"enabled": "false"}
    bare = tree(tmp_path / "bare")
    assert SOURCE.discover(SourceContext(bare)).is_empty()
    assert iommu_only_labels(bare) == {}


def test_procfs_fixture_has_no_iommu():
    host = HostFS(str(PROCFS) + "/")
    assert SOURCE.discover(SourceContext(host)).attributes["iommu.enabled"] == {"enabled": "false"}


def test_iommu_is_part_of_all_as_in_v06():
    assert "iommu" in select_sources(["all"])
