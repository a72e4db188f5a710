"""memory source: NUMA (with fallback), NVDIMM, swap, huge pages, labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.memory import SOURCE, count_swap_lines, hugepage_size_name, kib_quantity
from tests.fixture_paths import NFD_UPSTREAM, PROCFS

UPSTREAM_MEMORY = NFD_UPSTREAM / "source" / "memory" / "testdata"


def write_tree(root: Path, files: dict[str, str]) -> HostFS:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    root.mkdir(parents=True, exist_ok=True)
    return HostFS(str(root) + "/")


def link(root: Path, rel: str, target: Path) -> HostFS:
    """Point ``root/rel`` at a read-only fixture, as upstream points its globals."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return HostFS(str(root) + "/")


def discover(host: HostFS) -> Features:
    return SOURCE.discover(SourceContext(host, SOURCE.default_config()))


def labels(host: HostFS, features: Features) -> dict[str, str]:
    return SOURCE.labels(features, SourceContext(host, {}))


@pytest.mark.parametrize(
    "kib, quantity",
    [(2048, "2Mi"), (1048576, "1Gi"), (64, "64Ki"), (32768, "32Mi"), (1536, "1536Ki"), (0, "0")],
)
def test_kib_quantity(kib, quantity):
    assert kib_quantity(kib) == quantity


def test_hugepage_size_name():
    assert hugepage_size_name("hugepages-2048kB") == "hugepages-2Mi"
    assert hugepage_size_name("hugepages-1048576kB") == "hugepages-1Gi"
    assert hugepage_size_name("hugepages-fookB") is None


def test_count_swap_lines():
    assert count_swap_lines((UPSTREAM_MEMORY / "noswap").read_text()) == 1
    assert count_swap_lines((UPSTREAM_MEMORY / "swap").read_text()) == 2
    assert count_swap_lines("\n\n") == 0


def test_upstream_hugepages_fixture(tmp_path):
    # Upstream uses testdata/hugepages as the sysfs root itself.
    host = link(tmp_path, "sys", UPSTREAM_MEMORY / "hugepages")
    assert discover(host).attributes["memory.hugepages"] == {
        "enabled": "true",
        "hugepages-1Gi": "2",
        "hugepages-2Mi": "0",
    }


@pytest.mark.parametrize("name, enabled", [("swap", "true"), ("noswap", "false")])
def test_upstream_swap_fixtures(tmp_path, name, enabled):
    host = link(tmp_path, "proc/swaps", UPSTREAM_MEMORY / name)
    features = discover(host)
    assert features.attributes["memory.swap"] == {"enabled": enabled}
    assert ("swap" in labels(host, features)) == (enabled == "true")


def test_procfs_fixture_tree_uses_the_numa_fallback():
    host = HostFS(str(PROCFS) + "/")
    features = discover(host)
    # No sys/bus/node there; sys/devices/system/node has node1 and node2.
    assert features.attributes["memory.numa"] == {"is_numa": "true", "node_count": "2"}
    assert features.attributes["memory.swap"] == {"enabled": "true"}
    assert features.instances["memory.nv"] == []
    assert features.attributes["memory.hugepages"] == {"enabled": "false"}
    assert labels(host, features) == {"numa": "true", "swap": "true"}


def test_numa_bus_directory_wins(tmp_path):
    host = write_tree(
        tmp_path,
        {
            "sys/bus/node/devices/node0/x": "",
            "sys/devices/system/node/node0/x": "",
            "sys/devices/system/node/node1/x": "",
        },
    )
    features = discover(host)
    assert features.attributes["memory.numa"] == {"is_numa": "false", "node_count": "1"}
    assert "numa" not in labels(host, features)


def test_nvdimm_instances_and_labels(tmp_path):
    nd = "sys/bus/nd/devices"
    host = write_tree(
        tmp_path,
        {
            f"{nd}/region0/devtype": "nd_pmem\n",
            f"{nd}/region0/mode": "fsdax\n",
            f"{nd}/dax0.0/devtype": "nd_dax\n",
            f"{nd}/ndbus0/uevent": "",
        },
    )
    features = discover(host)
    assert features.instances["memory.nv"] == [
        {"name": "dax0.0", "devtype": "nd_dax"},
        {"name": "ndbus0"},
        {"name": "region0", "devtype": "nd_pmem", "mode": "fsdax"},
    ]
    assert labels(host, features) == {"nv.present": "true", "nv.dax": "true"}


def test_hugepages_edge_cases(tmp_path):
    hp = "sys/kernel/mm/hugepages"
    host = write_tree(
        tmp_path,
        {
            f"{hp}/hugepages-2048kB/nr_hugepages": "512\n",
            f"{hp}/hugepages-1048576kB/free_hugepages": "0\n",  # nr_hugepages unreadable
            f"{hp}/not-a-dir-2048kB": "",
        },
    )
    assert discover(host).attributes["memory.hugepages"] == {
        "enabled": "true",
        "hugepages-2Mi": "512",
        "hugepages-1Gi": "",
    }


def test_empty_tree(tmp_path):
    host = write_tree(tmp_path, {})
    features = discover(host)
    assert features.to_dict() == {
        "flags": {},
        "attributes": {"memory.hugepages": {"elements": {"enabled": "false"}}},
        "instances": {"memory.nv": {"elements": []}},
    }
    assert labels(host, features) == {}


def test_this_machine_matches_proc_swaps_and_sysfs():
    host = HostFS("/")
    features = discover(host)
    swaps = Path("/proc/swaps").read_text()
    expected = "true" if count_swap_lines(swaps) > 1 else "false"
    assert features.attributes["memory.swap"] == {"enabled": expected}
    nodes = list(Path("/sys/bus/node/devices").iterdir())
    assert features.attributes["memory.numa"]["node_count"] == str(len(nodes))
