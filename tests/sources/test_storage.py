"""storage source: block device queue attributes and nonrotationaldisk."""

from __future__ import annotations

import pytest

from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.storage import SOURCE, storage_labels
from nfd.worker.config import parse_config_text
from nfd.worker.discovery import run_discovery
from tests.hosttree import Link, host_tree


def _queue(path: str, **attrs: str) -> dict:
    return {f"{path}/queue/{k}": f"{v}\n" for k, v in attrs.items()}


@pytest.fixture
def block_host(tmp_path) -> HostFS:
    spec: dict = {}
    nvme = "sys/devices/pci0000:00/0000:01:00.0/nvme/nvme0/nvme0n1"
    spec.update(_queue(nvme, dax="0", rotational="0", nr_zones="0", zoned="none"))
    spec["sys/block/nvme0n1"] = Link("../devices/pci0000:00/0000:01:00.0/nvme/nvme0/nvme0n1")
    spec.update(_queue("sys/devices/virtual/block/sda", rotational="1", zoned="host-managed"))
    spec["sys/block/sda"] = Link("../devices/virtual/block/sda")
    spec["sys/devices/virtual/block/md0/size"] = "0\n"  # no queue directory at all
    spec["sys/block/md0"] = Link("../devices/virtual/block/md0")
    return host_tree(tmp_path, spec)


def test_discover(block_host):
    features = SOURCE.discover(SourceContext(block_host, {}))
    assert features.instances == {
        "storage.block": [
            {"name": "md0"},
            {"name": "nvme0n1", "dax": "0", "rotational": "0", "nr_zones": "0", "zoned": "none"},
            {"name": "sda", "rotational": "1", "zoned": "host-managed"},
        ]
    }


def test_labels(block_host):
    config = parse_config_text("core: {labelSources: [storage], featureSources: [storage]}", "c")
    assert run_discovery(block_host, config, "n").labels == {
        "feature.node.kubernetes.io/storage-nonrotationaldisk": "true"
    }


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([], {}),
        ([{"name": "sda", "rotational": "1"}, {"name": "md0"}], {}),
        ([{"name": "sda", "rotational": "1"}, {"name": "vda", "rotational": "0"}],
         {"nonrotationaldisk": "true"}),
    ],
)  # fmt: skip
def test_storage_labels(devices, expected):
    assert storage_labels(devices) == expected


def test_missing_sys_block_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="sys/block"):
        SOURCE.discover(SourceContext(HostFS(str(tmp_path) + "/"), {}))
