"""kernel source: version sanitising, kconfig search and parsing, modules, labels."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.kernel import (
    SOURCE,
    kconfig_search_paths,
    legacy_kconfig_value,
    parse_kconfig,
    parse_modules,
    parse_modules_builtin,
    parse_osrelease_version,
)
from nfd.worker.config import build_config
from nfd.worker.discovery import compute_labels, discover_features
from tests.fixture_paths import PROCFS

NS = "feature.node.kubernetes.io/"
KVER = "6.1.0-18-amd64"

KCONFIG = """#
# Automatically generated file; DO NOT EDIT.
CONFIG_NO_HZ_COMMON=y
# CONFIG_NO_HZ_FULL is not set
CONFIG_NO_HZ_IDLE=y
CONFIG_NO_HZ=y
CONFIG_PREEMPT_NONE=y
CONFIG_KVM=m
CONFIG_LSM="landlock,lockdown,yama,apparmor"
CONFIG_NR_CPUS=8192
CONFIG_BROKEN_LINE
"""

MODULES = """kvm_intel 380928 0 - Live 0x0000000000000000
kvm 1142784 1 kvm_intel, Live 0x0000000000000000
ib_uverbs 155648 0 - Live 0x0000000000000000

"""

BUILTIN = """kernel/fs/ext4/ext4.ko
kernel/drivers/block/loop.ko
kernel/crypto/crc32c_generic.ko
not-a-module.txt
"""


def write_tree(root: Path, files: dict[str, str | bytes]) -> HostFS:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return HostFS(str(root) + "/")


def discover(host: HostFS, **config) -> Features:
    return SOURCE.discover(SourceContext(host, {**SOURCE.default_config(), **config}))


def labels(host: HostFS, features: Features, **config) -> dict[str, str]:
    return SOURCE.labels(features, SourceContext(host, {**SOURCE.default_config(), **config}))


# -- pure parsers -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("6.2.3", {"full": "6.2.3", "major": "6", "minor": "2", "revision": "3"}),
        ("6.0.0-beta", {"full": "6.0.0-beta", "major": "6", "minor": "0", "revision": "0"}),
        ("6.8", {"full": "6.8", "major": "6", "minor": "8", "revision": ""}),
        (
            "6.0.10-100+123.x86_64~",
            {"full": "6.0.10-100_123.x86_64", "major": "6", "minor": "0", "revision": "10"},
        ),
        (
            "6.18.44-fc-v657\n",
            {"full": "6.18.44-fc-v657", "major": "6", "minor": "18", "revision": "44"},
        ),
        ("-rc.custom", {"full": "rc.custom"}),
    ],
)
def test_parse_osrelease_version_matches_upstream(raw, expected):
    assert parse_osrelease_version(raw) == expected


def test_parse_kconfig():
    options = parse_kconfig(KCONFIG)
    assert options == {
        "NO_HZ_COMMON": "y",
        "NO_HZ_IDLE": "y",
        "NO_HZ": "y",
        "PREEMPT_NONE": "y",
        "KVM": "m",
        "LSM": "landlock,lockdown,yama,apparmor",
        "NR_CPUS": "8192",
    }
    assert legacy_kconfig_value("y") == legacy_kconfig_value("m") == "true"
    assert legacy_kconfig_value("8192") == "8192"


def test_parse_modules_and_builtins():
    assert parse_modules(MODULES) == ["kvm_intel", "kvm", "ib_uverbs"]
    assert parse_modules_builtin(BUILTIN) == ["ext4", "loop", "crc32c_generic"]
    assert parse_modules("") == [] and parse_modules_builtin("") == []


def test_kconfig_search_paths_are_upstreams_order():
    paths = kconfig_search_paths(KVER)
    assert paths[0] == "proc/config.gz"
    assert paths[-1] == f"boot/config-{KVER}"
    assert f"lib/modules/{KVER}/build/.config" in paths
    assert f"usr/src/linux-rt-{KVER}/.config" in paths
    assert len(paths) == 11
    assert kconfig_search_paths(None) == ["proc/config.gz", "usr/src/linux/.config"]


# -- discovery on trees ---------------------------------------------------------


def full_tree(root: Path) -> HostFS:
    return write_tree(
        root,
        {
            "proc/sys/kernel/osrelease": KVER + "\n",
            "proc/config.gz": gzip.compress(KCONFIG.encode()),
            "proc/modules": MODULES,
            f"lib/modules/{KVER}/modules.builtin": BUILTIN,
            "sys/fs/selinux/enforce": "1",
            "sys/devices/virtual/misc/kvm/dev": "10:232\n",
        },
    )


def test_discovery_on_a_complete_tree(tmp_path):
    features = discover(full_tree(tmp_path))
    assert features.attributes["kernel.version"] == {
        "full": KVER,
        "major": "6",
        "minor": "1",
        "revision": "0",
    }
    assert features.attributes["kernel.config"]["LSM"] == "landlock,lockdown,yama,apparmor"
    assert features.flags["kernel.loadedmodule"] == {"kvm_intel", "kvm", "ib_uverbs"}
    assert features.flags["kernel.enabledmodule"] == {
        "kvm_intel",
        "kvm",
        "ib_uverbs",
        "ext4",
        "loop",
        "crc32c_generic",
    }
    assert features.attributes["kernel.selinux"] == {"enabled": "true"}
    assert features.attributes["kernel.kvm"] == {"enabled": "true"}


def test_labels_on_a_complete_tree(tmp_path):
    host = full_tree(tmp_path)
    assert labels(host, discover(host)) == {
        "version.full": KVER,
        "version.major": "6",
        "version.minor": "1",
        "version.revision": "0",
        "config.NO_HZ": "true",
        "config.NO_HZ_IDLE": "true",
        "selinux.enabled": "true",
    }
    custom = labels(host, discover(host), configOpts=["KVM", "NR_CPUS", "LSM", "MISSING"])
    assert {k: v for k, v in custom.items() if k.startswith("config.")} == {
        "config.KVM": "true",
        "config.NR_CPUS": "8192",
        "config.LSM": "landlock,lockdown,yama,apparmor",
    }


def test_kconfig_search_order_and_fallthrough(tmp_path):
    host = write_tree(
        tmp_path,
        {
            "proc/sys/kernel/osrelease": KVER,
            "proc/config.gz": b"not gzip at all",  # corrupt: skipped
            f"usr/lib/modules/{KVER}/config": "CONFIG_FROM_USR_LIB=y\n",
            f"boot/config-{KVER}": "CONFIG_FROM_BOOT=y\n",
        },
    )
    assert discover(host).attributes["kernel.config"] == {"FROM_USR_LIB": "y"}
    (tmp_path / f"usr/lib/modules/{KVER}/config").unlink()
    assert discover(host).attributes["kernel.config"] == {"FROM_BOOT": "y"}


def test_kconfig_without_a_known_version(tmp_path):
    host = write_tree(
        tmp_path,
        {"usr/src/linux/.config": "CONFIG_X=y\n", f"boot/config-{KVER}": "CONFIG_Y=y\n"},
    )
    features = discover(host)
    assert features.attributes["kernel.config"] == {"X": "y"}
    assert "kernel.version" not in features.attributes


def test_kconfig_file_option_wins_and_is_not_prefixed(tmp_path):
    own = tmp_path / "elsewhere" / "my-config.gz"
    own.parent.mkdir()
    own.write_bytes(gzip.compress(b"CONFIG_MINE=m\n"))
    host = full_tree(tmp_path / "host")
    assert discover(host, kconfigFile=str(own)).attributes["kernel.config"] == {"MINE": "m"}
    missing = discover(host, kconfigFile=str(tmp_path / "nope"))
    assert "LSM" in missing.attributes["kernel.config"]


def test_enabledmodule_needs_modules_builtin(tmp_path):
    host = write_tree(tmp_path, {"proc/sys/kernel/osrelease": KVER, "proc/modules": MODULES})
    features = discover(host)
    assert features.flags["kernel.loadedmodule"] == {"kvm_intel", "kvm", "ib_uverbs"}
    assert "kernel.enabledmodule" not in features.flags  # as upstream
    builtin_only = write_tree(
        tmp_path / "b",
        {"proc/sys/kernel/osrelease": KVER, f"lib/modules/{KVER}/modules.builtin": BUILTIN},
    )
    features = discover(builtin_only)
    assert "kernel.loadedmodule" not in features.flags
    assert features.flags["kernel.enabledmodule"] == {"ext4", "loop", "crc32c_generic"}


def test_selinux_states(tmp_path):
    no_selinux = write_tree(tmp_path / "a", {"sys/fs/cgroup/x": ""})
    assert discover(no_selinux).attributes["kernel.selinux"] == {"enabled": "false"}
    permissive = write_tree(tmp_path / "b", {"sys/fs/selinux/enforce": "0"})
    features = discover(permissive)
    assert features.attributes["kernel.selinux"] == {"enabled": "false"}
    assert "selinux.enabled" not in labels(permissive, features)
    # As upstream: selinuxfs without an enforce file is not enforcing.
    no_enforce = write_tree(tmp_path / "c", {"sys/fs/selinux/avc/cache_stats": ""})
    assert discover(no_enforce).attributes["kernel.selinux"] == {"enabled": "false"}


def test_empty_tree_gives_only_kvm_false(tmp_path):
    features = discover(HostFS(str(tmp_path) + "/"))
    assert features.to_dict() == {
        "flags": {},
        "attributes": {"kernel.kvm": {"elements": {"enabled": "false"}}},
        "instances": {},
    }
    assert labels(HostFS(str(tmp_path) + "/"), features) == {}


def test_procfs_fixture_tree():
    prefix = PROCFS
    features = discover(HostFS(str(prefix) + "/"))
    # sys/fs/selinux has only avc/: no enforce file, so not enforcing (as upstream).
    assert features.attributes["kernel.selinux"] == {"enabled": "false"}
    assert "kernel.version" not in features.attributes  # no proc/sys/kernel/osrelease
    assert features.attributes["kernel.kvm"] == {"enabled": "false"}


# -- this machine ---------------------------------------------------------------


def test_this_machine_version_agrees_with_uname():
    host = HostFS("/")
    config = build_config({})
    config.core.label_sources = ["kernel"]
    features = discover_features(host, config, "node", ["kernel"])
    got = compute_labels(features, host, config, "node")
    release = os.uname().release
    assert got[NS + "kernel-version.full"] == parse_osrelease_version(release)["full"]
    assert got[NS + "kernel-version.major"] == release.split(".")[0]
    assert got[NS + "kernel-version.minor"] == release.split(".")[1]
