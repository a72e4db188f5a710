"""usb source: devices found by idProduct, per-interface classes, labels."""

from __future__ import annotations

import pytest

from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.usb import SOURCE, device_instances
from nfd.worker.config import parse_config_text
from nfd.worker.discovery import run_discovery
from tests.hosttree import Link, host_tree


def _usb_device(path: str, cls: str, vendor: str, product: str, serial: str | None = None):
    spec = {
        f"{path}/bDeviceClass": f"{cls}\n",
        f"{path}/idVendor": f"{vendor}\n",
        f"{path}/idProduct": f"{product}\n",
    }
    if serial is not None:
        spec[f"{path}/serial"] = f"{serial}\n"
    return spec


@pytest.fixture
def usb_host(tmp_path) -> HostFS:
    base = "sys/devices/pci0000:00/0000:00:14.0/usb1"
    spec: dict = {}
    # A root hub (09), an FPGA board of class fe, a composite device (00)
    # with a video (0e) and an audio (01) interface, and a vendor-specific one.
    spec.update(_usb_device(f"{base}", "09", "1d6b", "0002", serial="0000:00:14.0"))
    spec.update(_usb_device(f"{base}/1-1", "fe", "1a6e", "089a", serial="  "))
    spec.update(_usb_device(f"{base}/1-2", "00", "046d", "085e", serial="ABC123"))
    spec[f"{base}/1-2/1-2:1.0/bInterfaceClass"] = "0e\n"
    spec[f"{base}/1-2/1-2:1.1/bInterfaceClass"] = "01\n"
    spec[f"{base}/1-2/1-2:1.2/bInterfaceClass"] = "0e\n"
    spec.update(_usb_device(f"{base}/1-3", "ff", "0403", "6001"))
    for name, rel in [
        ("usb1", ""),
        ("1-1", "/1-1"),
        ("1-2", "/1-2"),
        ("1-3", "/1-3"),
        ("1-2:1.0", "/1-2/1-2:1.0"),
        ("1-2:1.1", "/1-2/1-2:1.1"),
    ]:
        spec[f"sys/bus/usb/devices/{name}"] = Link(
            f"../../../devices/pci0000:00/0000:00:14.0/usb1{rel}"
        )
    return host_tree(tmp_path, spec)


def test_device_instances_keep_the_device_class():
    attrs = {"class": "fe", "vendor": "1a6e", "device": "089a"}
    assert device_instances(attrs, ["0e"]) == [attrs]


def test_class_00_gives_one_instance_per_interface_duplicates_kept():
    attrs = {"class": "00", "vendor": "046d", "device": "085e"}
    assert device_instances(attrs, ["0e", "01", "0e"]) == [
        {"class": "0e", "vendor": "046d", "device": "085e"},
        {"class": "01", "vendor": "046d", "device": "085e"},
        {"class": "0e", "vendor": "046d", "device": "085e"},
    ]


def test_discover(usb_host):
    features = SOURCE.discover(SourceContext(usb_host, SOURCE.default_config()))
    assert features.instances == {
        "usb.device": [
            # Interfaces (1-2:1.0 ...) have no idProduct and are not devices.
            {"class": "fe", "vendor": "1a6e", "device": "089a"},  # blank serial left out
            {"class": "0e", "vendor": "046d", "device": "085e", "serial": "ABC123"},
            {"class": "01", "vendor": "046d", "device": "085e", "serial": "ABC123"},
            {"class": "0e", "vendor": "046d", "device": "085e", "serial": "ABC123"},
            {"class": "ff", "vendor": "0403", "device": "6001"},
            {"class": "09", "vendor": "1d6b", "device": "0002", "serial": "0000:00:14.0"},
        ]
    }


def test_default_labels(usb_host):
    ctx = SourceContext(usb_host, SOURCE.default_config())
    assert SOURCE.labels(SOURCE.discover(ctx), ctx) == {
        "fe_1a6e_089a.present": "true",
        "0e_046d_085e.present": "true",
        "ff_0403_6001.present": "true",
    }


def test_configured_fields_in_canonical_order(usb_host):
    config = {"deviceClassWhitelist": ["0E"], "deviceLabelFields": ["serial", "vendor", "bogus"]}
    ctx = SourceContext(usb_host, config)
    assert SOURCE.labels(SOURCE.discover(ctx), ctx) == {"046d_ABC123.present": "true"}


def test_no_usb_bus_means_no_devices_and_no_error(tmp_path):
    features = SOURCE.discover(SourceContext(HostFS(str(tmp_path) + "/"), {}))
    assert features.instances == {"usb.device": []}


def test_full_label_names(usb_host):
    config = parse_config_text("core:\n  labelSources: [usb]\n  featureSources: [usb]\n", "c")
    assert run_discovery(usb_host, config, "n").labels == {
        "feature.node.kubernetes.io/usb-0e_046d_085e.present": "true",
        "feature.node.kubernetes.io/usb-fe_1a6e_089a.present": "true",
        "feature.node.kubernetes.io/usb-ff_0403_6001.present": "true",
    }
