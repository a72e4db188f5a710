"""system source: os-release (with our usr/lib fallback), DMI ids, node name."""

from __future__ import annotations

import pytest

from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.system import DMI_ID_ATTRIBUTES, SOURCE, parse_os_release
from nfd.worker.config import parse_config_text
from nfd.worker.discovery import run_discovery
from tests.hosttree import Link, host_tree

UBUNTU = """\
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
"""


def _discover(host: HostFS, node: str = "node-1"):
    ctx = SourceContext(host, {}, node)
    features = SOURCE.discover(ctx)
    return features, SOURCE.labels(features, ctx)


def test_parse_os_release_strips_quotes_and_splits_version():
    assert parse_os_release(UBUNTU) == {
        "PRETTY_NAME": "Ubuntu 22.04.4 LTS",
        "NAME": "Ubuntu",
        "VERSION_ID": "22.04",
        "VERSION_ID.major": "22",
        "VERSION_ID.minor": "04",
        "VERSION": "22.04.4 LTS (Jammy Jellyfish)",
        "ID": "ubuntu",
        "ID_LIKE": "debian",
    }


@pytest.mark.parametrize(
    ("version_id", "parts"),
    [
        ("12", {"VERSION_ID.major": "12"}),
        ("'9.3'", {"VERSION_ID.major": "9", "VERSION_ID.minor": "3"}),
        ("3.19.1", {"VERSION_ID.major": "3", "VERSION_ID.minor": "19"}),
        # Upstream's pattern backtracks: the minor part is dropped, not the major.
        ("2024.1-lts", {"VERSION_ID.major": "2024"}),
        ("rolling", {}),
    ],
)
def test_parse_os_release_version_parts(version_id, parts):
    release = parse_os_release(f"ID=x\nVERSION_ID={version_id}\n")
    assert {k: v for k, v in release.items() if k.startswith("VERSION_ID.")} == parts


def test_parse_os_release_ignores_comments_and_junk():
    text = "# a comment\n\nID=fedora\nnot a line\n  INDENTED=x\nEMPTY=\nVARIANT_ID=coreos\n"
    assert parse_os_release(text) == {"ID": "fedora", "VARIANT_ID": "coreos"}


def test_labels_are_the_four_upstream_keys(tmp_path):
    _, labels = _discover(host_tree(tmp_path, {"etc/os-release": UBUNTU}))
    assert labels == {
        "os_release.ID": "ubuntu",
        "os_release.VERSION_ID": "22.04",
        "os_release.VERSION_ID.major": "22",
        "os_release.VERSION_ID.minor": "04",
    }


def test_usr_lib_fallback_when_etc_is_missing(tmp_path):
    # Our deliberate deviation from upstream (os-release(5) names this fallback).
    features, labels = _discover(host_tree(tmp_path, {"usr/lib/os-release": "ID=arch\n"}))
    assert features.attributes["system.osrelease"] == {"ID": "arch"}
    assert labels == {"os_release.ID": "arch"}


def test_etc_wins_over_usr_lib(tmp_path):
    host = host_tree(tmp_path, {"etc/os-release": "ID=a\n", "usr/lib/os-release": "ID=b\n"})
    assert _discover(host)[1] == {"os_release.ID": "a"}


def test_relative_link_to_usr_lib(tmp_path):
    host = host_tree(
        tmp_path,
        {"usr/lib/os-release": "ID=debian\n", "etc/os-release": Link("../usr/lib/os-release")},
    )
    assert _discover(host)[1] == {"os_release.ID": "debian"}


def test_absolute_link_stays_inside_the_host_prefix(tmp_path):
    # /host-etc/os-release -> /usr/lib/os-release must mean the host's file,
    # not the file of the machine (or container) the worker runs on.
    host = host_tree(
        tmp_path,
        {"usr/lib/os-release": "ID=flatcar\n", "etc/os-release": Link("/usr/lib/os-release")},
    )
    assert _discover(host)[1] == {"os_release.ID": "flatcar"}


def test_no_os_release_at_all(tmp_path):
    features, labels = _discover(host_tree(tmp_path, {"sys": None}))
    assert "system.osrelease" not in features.attributes
    assert labels == {}


def test_dmiid_and_nodename(tmp_path):
    dmi = "sys/devices/virtual/dmi/id"
    host = host_tree(
        tmp_path,
        {
            f"{dmi}/sys_vendor": "Dell Inc.\n",
            f"{dmi}/product_name": "PowerEdge R6515\n",
            f"{dmi}/chassis_version": "\n",
            # Serials identify one machine: never read.
            f"{dmi}/product_serial": "ABC123\n",
            f"{dmi}/product_uuid": "4c4c4544-0000\n",
        },
    )
    features, _ = _discover(host, node="worker-7")
    assert features.attributes["system.dmiid"] == {
        "sys_vendor": "Dell Inc.",
        "product_name": "PowerEdge R6515",
        "chassis_version": "",
    }
    assert features.attributes["system.name"] == {"nodename": "worker-7"}
    assert "product_serial" not in DMI_ID_ATTRIBUTES and "product_uuid" not in DMI_ID_ATTRIBUTES


def test_invalid_label_value_is_dropped_alone(tmp_path):
    host = host_tree(tmp_path, {"etc/os-release": 'ID="my distro"\nVERSION_ID=7\n'})
    config = parse_config_text("core: {labelSources: [system], featureSources: [system]}", "c")
    result = run_discovery(host, config, "n")
    assert result.labels == {
        "feature.node.kubernetes.io/system-os_release.VERSION_ID": "7",
        "feature.node.kubernetes.io/system-os_release.VERSION_ID.major": "7",
    }
    assert any("system-os_release.ID" in w and "my distro" in w for w in result.warnings)
