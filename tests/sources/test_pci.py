"""pci source: parsing helpers, upstream's rootfs-1 expectations, a host-like tree."""

from __future__ import annotations

import pytest

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.pci import (
    SOURCE,
    class_whitelisted,
    device_label,
    label_fields,
    pci_attr_value,
)
from nfd.worker.config import parse_config_text
from nfd.worker.discovery import run_discovery
from tests.fixture_paths import PCI_ROOTFS_1
from tests.hosttree import Link, host_tree

ROOTFS_1 = PCI_ROOTFS_1
CANONICAL = ("class", "vendor", "device", "subsystem_vendor", "subsystem_device")


def _dev(cls: str, device: str, sub_vendor: str = "8086", sub_device: str = "35cf", **extra):
    vendor = extra.pop("vendor", "8086")
    attrs = {
        "class": cls,
        "vendor": vendor,
        "device": device,
        "subsystem_vendor": sub_vendor,
        "subsystem_device": sub_device,
    }
    attrs.update(extra)
    return attrs


# Upstream's pci_test.go expectation for rootfs-1, in directory order;
# 0000:00:1f.2 has only a class file and is skipped.
ROOTFS_1_DEVICES = [
    _dev("0880", "2021"),
    _dev("ff00", "a1ed"),
    _dev("0106", "a1d2"),
    _dev("1180", "a1b1"),
    _dev("0780", "a1ba"),
    _dev("0604", "a193"),
    _dev("0c80", "a1a4"),
    _dev("0300", "2000", vendor="1a03", sub_vendor="1a03", sub_device="2000"),
    _dev(
        "0b40",
        "37c8",
        **{
            "iommu/intel-iommu/version": "1:0",
            "iommu_group/type": "identity",
            "sriov_totalvfs": "16",
        },
    ),
    _dev("0200", "37d2", sriov_totalvfs="32"),
]


def _labels(host: HostFS, config: dict | None = None) -> dict[str, str]:
    ctx = SourceContext(host, config if config is not None else SOURCE.default_config())
    return SOURCE.labels(SOURCE.discover(ctx), ctx)


# -- pure helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ("0x030200\n", "class", "0302"),
        ("0x0b4000\n", "class", "0b40"),
        ("0x10de\n", "vendor", "10de"),
        ("0x03\n", "class", "03"),  # shorter than 4: kept whole
        ("16\n", "sriov_totalvfs", "16"),
        ("identity\n", "iommu_group/type", "identity"),
        ("0x123456\n", "device", "123456"),  # only class is cut
        ("", "vendor", ""),
    ],
)
def test_pci_attr_value(raw, name, expected):
    assert pci_attr_value(raw, name) == expected


def test_label_fields_are_put_in_canonical_order():
    fields = ["subsystem_device", "vendor", "class"]
    assert label_fields(fields, CANONICAL, ["class", "vendor"], "t") == [
        "class",
        "vendor",
        "subsystem_device",
    ]


def test_label_fields_drop_unknown_names_with_a_warning(caplog):
    assert label_fields(["foo", "class"], CANONICAL, ["class", "vendor"], "t") == ["class"]
    assert "foo" in caplog.text


@pytest.mark.parametrize("configured", [[], ["foo", "bar"]])
def test_label_fields_fall_back_to_the_default(configured):
    assert label_fields(configured, CANONICAL, ["class", "vendor"], "t") == ["class", "vendor"]


def test_device_label_joins_fields_with_underscore():
    attrs = _dev("0302", "20b0", vendor="10de")
    assert device_label(attrs, ["class", "vendor"]) == "0302_10de"
    assert device_label(attrs, ["vendor"]) == "10de"
    assert device_label(attrs, ["class", "vendor", "device"]) == "0302_10de_20b0"


def test_class_whitelist_is_a_prefix_match_lowercased():
    assert class_whitelisted("0302", ["03"])
    assert class_whitelisted("0b40", ["0B40"])
    assert not class_whitelisted("0200", ["03", "0b40", "12"])


# -- upstream's rootfs-1 ---------------------------------------------------------


def test_rootfs_1_features_match_upstream():
    features = SOURCE.discover(SourceContext(HostFS(str(ROOTFS_1)), SOURCE.default_config()))
    assert features.instances == {"pci.device": ROOTFS_1_DEVICES}
    assert not features.flags and not features.attributes


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            None,
            {
                "0300_1a03.present": "true",
                "0b40_8086.present": "true",
                "0b40_8086.sriov.capable": "true",
            },
        ),
        (
            {"deviceClassWhitelist": ["0c"], "deviceLabelFields": []},
            {"0c80_8086.present": "true"},
        ),
        (
            {"deviceClassWhitelist": ["0c"], "deviceLabelFields": ["foo", "bar"]},
            {"0c80_8086.present": "true"},
        ),
        (
            {"deviceClassWhitelist": ["0c"], "deviceLabelFields": ["foo", "class"]},
            {"0c80.present": "true"},
        ),
    ],
)
def test_rootfs_1_labels_match_upstream(config, expected):
    assert _labels(HostFS(str(ROOTFS_1)), config) == expected


def test_missing_sysfs_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="sys/bus/pci/devices"):
        SOURCE.discover(SourceContext(HostFS(str(tmp_path / "rootfs-empty")), {}))


def test_missing_sysfs_dir_costs_only_the_pci_source(tmp_path):
    host = host_tree(tmp_path, {"etc/os-release": "ID=debian\nVERSION_ID=12\n"})
    config = parse_config_text("core:\n  labelSources: [pci, system]\n", "test.conf")
    config.core.feature_sources = ["pci", "system"]
    result = run_discovery(host, config, "node-1")
    assert "pci.device" not in result.features.instances
    assert result.labels == {
        "feature.node.kubernetes.io/system-os_release.ID": "debian",
        "feature.node.kubernetes.io/system-os_release.VERSION_ID": "12",
        "feature.node.kubernetes.io/system-os_release.VERSION_ID.major": "12",
    }
    assert any("source pci" in w and "sys/bus/pci/devices" in w for w in result.warnings)


def test_labels_of_empty_features_are_empty():
    assert SOURCE.labels(Features(), SourceContext(HostFS("/nonexistent"), {})) == {}


# -- a tree laid out like a real host ----------------------------------------------------


def _pci_function(path: str, cls: str, vendor: str, device: str, **extra: str) -> dict:
    spec = {
        f"{path}/class": f"0x{cls}\n",
        f"{path}/vendor": f"0x{vendor}\n",
        f"{path}/device": f"0x{device}\n",
        f"{path}/subsystem_vendor": f"0x{vendor}\n",
        f"{path}/subsystem_device": "0x1234\n",
    }
    spec.update({f"{path}/{k}": v for k, v in extra.items()})
    return spec


@pytest.fixture
def gpu_host(tmp_path) -> HostFS:
    """A datacenter GPU, a VGA card, an SR-IOV NIC and a QAT card with 0 VFs."""
    spec: dict = {}
    devices = "sys/devices/pci0000:00"
    for bdf, fn in [
        ("0000:17:00.0", _pci_function(f"{devices}/0000:17:00.0", "030200", "10de", "20b0")),
        ("0000:65:00.0", _pci_function(f"{devices}/0000:65:00.0", "030000", "10de", "1eb8")),
        (
            "0000:b3:00.0",
            _pci_function(
                f"{devices}/0000:b3:00.0", "020000", "15b3", "101b", sriov_totalvfs="8\n"
            ),
        ),
        (
            "0000:3d:00.0",
            _pci_function(
                f"{devices}/0000:3d:00.0", "0b4000", "8086", "4940", sriov_totalvfs="0\n"
            ),
        ),
    ]:
        spec.update(fn)
        spec[f"sys/bus/pci/devices/{bdf}"] = Link(f"../../../devices/pci0000:00/{bdf}")
    # iommu_group is a link to the group directory, as on a real host.
    spec["sys/kernel/iommu_groups/7/type"] = "DMA\n"
    spec[f"{devices}/0000:17:00.0/iommu_group"] = Link("../../../kernel/iommu_groups/7")
    # A function whose mandatory file is missing, and a dangling link.
    spec[f"{devices}/0000:00:1f.2/class"] = "0x030000\n"
    spec["sys/bus/pci/devices/0000:00:1f.2"] = Link("../../../devices/pci0000:00/0000:00:1f.2")
    spec["sys/bus/pci/devices/0000:99:00.0"] = Link("../../../devices/pci0000:00/gone")
    return host_tree(tmp_path, spec)


def test_host_tree_devices_follow_links(gpu_host):
    features = SOURCE.discover(SourceContext(gpu_host, SOURCE.default_config()))
    devices = features.instances["pci.device"]
    assert [d["class"] for d in devices] == ["0302", "0b40", "0300", "0200"]
    assert devices[0]["iommu_group/type"] == "DMA"
    assert devices[1]["sriov_totalvfs"] == "0"


def test_default_labels_on_a_gpu_host(gpu_host):
    assert _labels(gpu_host) == {
        "0302_10de.present": "true",
        "0300_10de.present": "true",
        # sriov_totalvfs exists (even 0): upstream sets sriov.capable.
        "0b40_8086.present": "true",
        "0b40_8086.sriov.capable": "true",
    }


def test_vendor_only_label_fields_give_pci_10de_present(gpu_host):
    config = {"deviceClassWhitelist": ["0200", "03", "12"], "deviceLabelFields": ["vendor"]}
    assert _labels(gpu_host, config) == {
        "10de.present": "true",
        "15b3.present": "true",
        "15b3.sriov.capable": "true",
    }


def test_config_file_drives_labels_end_to_end(gpu_host):
    config = parse_config_text(
        "core:\n  labelSources: [pci]\n  featureSources: [pci]\n"
        "sources:\n  pci:\n    deviceClassWhitelist: ['0302']\n"
        "    deviceLabelFields: [device, class, vendor]\n",
        "nfd-worker.conf",
    )
    result = run_discovery(gpu_host, config, "node-1")
    assert result.labels == {"feature.node.kubernetes.io/pci-0302_10de_20b0.present": "true"}
    assert result.warnings == []


def test_unquoted_yaml_class_codes_warn(gpu_host, caplog):
    config = parse_config_text(
        "sources:\n  pci:\n    deviceClassWhitelist: [03, '0b40']\n", "nfd-worker.conf"
    )
    labels = _labels(gpu_host, config.source_config("pci"))
    # 03 is the YAML number 3: no 03xx device matches, and the user is told why.
    assert labels == {"0b40_8086.present": "true", "0b40_8086.sriov.capable": "true"}
    assert "quote class codes" in caplog.text


def test_unreadable_files_cost_only_their_attribute_or_device(tmp_path):
    # A directory where a file should be cannot be read, like an EIO/EINVAL file.
    spec = {}
    spec.update(_pci_function("sys/bus/pci/devices/0000:01:00.0", "030200", "10de", "20b0"))
    spec.update(_pci_function("sys/bus/pci/devices/0000:02:00.0", "030000", "1a03", "2000"))
    spec.update(_pci_function("sys/bus/pci/devices/0000:03:00.0", "0b4000", "8086", "37c8"))
    spec["sys/bus/pci/devices/0000:01:00.0/sriov_totalvfs/x"] = "optional: left out\n"
    del spec["sys/bus/pci/devices/0000:02:00.0/vendor"]
    spec["sys/bus/pci/devices/0000:02:00.0/vendor/x"] = "mandatory: device skipped\n"
    host = host_tree(tmp_path, spec)
    devices = SOURCE.discover(SourceContext(host, {})).instances["pci.device"]
    assert [(d["class"], "sriov_totalvfs" in d) for d in devices] == [
        ("0302", False),
        ("0b40", False),
    ]
