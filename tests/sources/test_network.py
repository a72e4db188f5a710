"""network source: physical/virtual split, attributes, SR-IOV labels."""

from __future__ import annotations

import pytest

from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.network import SOURCE, sriov_labels
from nfd.worker.config import parse_config_text
from nfd.worker.discovery import run_discovery
from tests.hosttree import Link, host_tree


def _iface(path: str, operstate: str, mtu: str, speed: str | None = None) -> dict:
    spec = {f"{path}/operstate": f"{operstate}\n", f"{path}/mtu": f"{mtu}\n"}
    if speed is not None:
        spec[f"{path}/speed"] = f"{speed}\n"
    return spec


@pytest.fixture
def net_host(tmp_path) -> HostFS:
    pci = "sys/devices/pci0000:00/0000:3b:00.0"
    spec: dict = {}
    # A physical SR-IOV NIC with 4 of 64 VFs configured.
    spec.update(_iface(f"{pci}/net/ens1f0", "up", "9000", "25000"))
    spec[f"{pci}/sriov_totalvfs"] = "64\n"
    spec[f"{pci}/sriov_numvfs"] = "4\n"
    spec[f"{pci}/net/ens1f0/device"] = Link("../../../0000:3b:00.0")
    spec["sys/class/net/ens1f0"] = Link("../../devices/pci0000:00/0000:3b:00.0/net/ens1f0")
    # A physical NIC that is down: no speed (reading it gives EINVAL on a host).
    virtio = "sys/devices/pci0000:00/0000:00:03.0/virtio2"
    spec.update(_iface(f"{virtio}/net/eth0", "down", "1500"))
    spec[f"{virtio}/net/eth0/device"] = Link("../../../virtio2")
    spec["sys/class/net/eth0"] = Link("../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0")
    # Virtual interfaces, and the bonding control file that is not one.
    spec.update(_iface("sys/devices/virtual/net/lo", "unknown", "65536"))
    spec["sys/class/net/lo"] = Link("../../devices/virtual/net/lo")
    spec.update(_iface("sys/devices/virtual/net/bond0", "up", "1500", "-1"))
    spec["sys/class/net/bond0"] = Link("../../devices/virtual/net/bond0")
    spec["sys/class/net/bonding_masters"] = "bond0\n"
    return host_tree(tmp_path, spec)


def test_discover_splits_physical_and_virtual(net_host):
    features = SOURCE.discover(SourceContext(net_host, {}))
    assert features.instances == {
        "network.device": [
            {"name": "ens1f0", "operstate": "up", "speed": "25000", "mtu": "9000",
             "sriov_numvfs": "4", "sriov_totalvfs": "64"},
            {"name": "eth0", "operstate": "down", "mtu": "1500"},
        ],
        "network.virtual": [
            {"name": "bond0", "operstate": "up", "speed": "-1", "mtu": "1500"},
            {"name": "lo", "operstate": "unknown", "mtu": "65536"},
        ],
    }  # fmt: skip


def test_labels(net_host):
    config = parse_config_text("core: {labelSources: [network], featureSources: [network]}", "c")
    assert run_discovery(net_host, config, "n").labels == {
        "feature.node.kubernetes.io/network-sriov.capable": "true",
        "feature.node.kubernetes.io/network-sriov.configured": "true",
    }


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([], {}),
        ([{"sriov_totalvfs": "0", "sriov_numvfs": "0"}], {}),  # unlike pci, 0 is not capable
        ([{"sriov_totalvfs": "8", "sriov_numvfs": "0"}], {"sriov.capable": "true"}),
        ([{"sriov_totalvfs": "x"}], {}),
        (
            [{"sriov_totalvfs": "8"}, {"sriov_totalvfs": "4", "sriov_numvfs": "2"}],
            {"sriov.capable": "true", "sriov.configured": "true"},
        ),
    ],
)
def test_sriov_labels(devices, expected):
    assert sriov_labels(devices) == expected


def test_dangling_device_link_means_virtual(tmp_path):
    host = host_tree(
        tmp_path,
        {"sys/class/net/tap0/device": Link("../gone"), "sys/class/net/tap0/mtu": "1500\n"},
    )
    features = SOURCE.discover(SourceContext(host, {}))
    assert features.instances["network.virtual"] == [{"name": "tap0", "mtu": "1500"}]
    assert features.instances["network.device"] == []


def test_missing_class_net_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="sys/class/net"):
        SOURCE.discover(SourceContext(HostFS(str(tmp_path) + "/"), {}))


def test_unreadable_attribute_is_left_out(tmp_path):
    host = host_tree(
        tmp_path,
        {
            "sys/class/net/eth0/device": None,
            "sys/class/net/eth0/operstate": "up\n",
            "sys/class/net/eth0/speed/x": "a directory reads as an error\n",
            "sys/class/net/eth0/mtu": "1500\n",
        },
    )
    features = SOURCE.discover(SourceContext(host, {}))
    assert features.instances["network.device"] == [
        {"name": "eth0", "operstate": "up", "mtu": "1500"}
    ]
