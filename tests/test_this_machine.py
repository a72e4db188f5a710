"""Discovery on this machine's own /sys, /proc and /etc, checked against what the
kernel and the distribution say through other channels (uname, os-release,
plain directory listings), independently of our parsing code."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import pytest

from nfd.hostfs import HostFS
from nfd.worker.config import build_config
from nfd.worker.discovery import DiscoveryResult, run_discovery

NS = "feature.node.kubernetes.io"


@pytest.fixture(scope="module")
def result() -> DiscoveryResult:
    return run_discovery(HostFS("/"), build_config({}, "defaults"), "this-node")


def _os_release() -> dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        if os.path.exists(path):
            text = Path(path).read_text()
            break
    else:
        pytest.fail("this machine has no os-release file")
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            out[key] = value.strip().strip("'\"")
    return out


def _instances(result: DiscoveryResult, name: str) -> list[dict[str, str]]:
    assert name in result.features.instances, f"no {name}; warnings: {result.warnings}"
    return result.features.instances[name]


def test_my_sources_ran_without_failing(result):
    for name in ("pci", "usb", "network", "storage", "system"):
        failed = [w for w in result.warnings if w.startswith(f"source {name}:")]
        assert not failed, failed


def test_os_release_labels(result):
    release = _os_release()
    assert result.labels[f"{NS}/system-os_release.ID"] == release["ID"]
    if "VERSION_ID" in release:
        version = release["VERSION_ID"]
        assert result.labels[f"{NS}/system-os_release.VERSION_ID"] == version
        assert (
            result.labels[f"{NS}/system-os_release.VERSION_ID.major"] == re.split(r"\D", version)[0]
        )


def test_node_name_feature(result):
    assert result.features.attributes["system.name"] == {"nodename": "this-node"}


def test_pci_devices_are_the_sysfs_entries(result):
    if not os.path.isdir("/sys/bus/pci/devices"):
        assert "pci.device" not in result.features.instances
        return
    entries = os.listdir("/sys/bus/pci/devices")
    devices = _instances(result, "pci.device")
    assert len(devices) == len(entries)
    for dev, entry in zip(devices, sorted(entries), strict=True):
        raw = Path(f"/sys/bus/pci/devices/{entry}/class").read_text().strip()
        assert dev["class"] == raw[2:6], entry
        assert dev["vendor"] == Path(f"/sys/bus/pci/devices/{entry}/vendor").read_text()[2:6]


def test_pci_labels_follow_the_default_whitelist(result):
    expected = set()
    for dev in result.features.instances.get("pci.device", []):
        if dev["class"].startswith(("03", "0b40", "12")):
            expected.add(f"{NS}/pci-{dev['class']}_{dev['vendor']}.present")
    assert {k for k in result.labels if k.startswith(f"{NS}/pci-") and k.endswith(".present")} == (
        expected
    )


def test_network_split_follows_device_links(result):
    names = [n for n in os.listdir("/sys/class/net") if n != "bonding_masters"]
    physical = {n for n in names if os.path.exists(f"/sys/class/net/{n}/device")}
    assert {d["name"] for d in _instances(result, "network.device")} == physical
    assert {d["name"] for d in _instances(result, "network.virtual")} == set(names) - physical
    for dev in _instances(result, "network.device") + _instances(result, "network.virtual"):
        assert dev["mtu"] == Path(f"/sys/class/net/{dev['name']}/mtu").read_text().strip()


def test_block_devices_are_sys_block(result):
    devices = _instances(result, "storage.block")
    assert [d["name"] for d in devices] == sorted(os.listdir("/sys/block"))
    rotational = {
        n: Path(f"/sys/block/{n}/queue/rotational").read_text().strip()
        for n in os.listdir("/sys/block")
        if os.path.exists(f"/sys/block/{n}/queue/rotational")
    }
    assert (f"{NS}/storage-nonrotationaldisk" in result.labels) == ("0" in rotational.values())


def test_usb_devices(result):
    bus = "/sys/bus/usb/devices"
    names = sorted(os.listdir(bus)) if os.path.isdir(bus) else []
    expected = 0
    for name in names:
        if not os.path.exists(f"{bus}/{name}/idProduct"):
            continue
        if Path(f"{bus}/{name}/bDeviceClass").read_text().strip() != "00":
            expected += 1
        else:  # one instance per interface
            expected += len(list(Path(f"{bus}/{name}/").glob("*/bInterfaceClass")))
    assert len(_instances(result, "usb.device")) == expected


def test_kernel_version_is_uname(result):
    release = platform.release()
    full = re.sub(r"[^-A-Za-z0-9_.]", "_", release).strip("-_.")
    assert result.labels[f"{NS}/kernel-version.full"] == full
    major, minor = re.match(r"(\d+)\.(\d+)", release).groups()
    assert result.labels[f"{NS}/kernel-version.major"] == major
    assert result.labels[f"{NS}/kernel-version.minor"] == minor


def _cpuinfo() -> dict[str, str]:
    block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 cpuinfo fields")
def test_cpu_model_and_flags_agree_with_cpuinfo(result):
    info = _cpuinfo()
    vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(info["vendor_id"])
    if vendor:
        assert result.labels[f"{NS}/cpu-model.vendor_id"] == vendor
    assert result.labels[f"{NS}/cpu-model.family"] == info["cpu family"]
    assert result.labels[f"{NS}/cpu-model.id"] == info["model"]
    flags = set(info["flags"].split())
    cpuid = result.features.flags.get("cpu.cpuid", set())
    # cpuinfo spelling -> upstream's CPUID name (a few well-known ones).
    for cpuinfo_name, cpuid_name in [
        ("avx2", "AVX2"),
        ("avx512f", "AVX512F"),
        ("aes", "AESNI"),
        ("sse4_2", "SSE42"),
        ("pclmulqdq", "CLMUL"),
    ]:
        assert (cpuid_name in cpuid) == (cpuinfo_name in flags), cpuid_name
    # Blacklisted by default: a raw feature but never a label.
    assert f"{NS}/cpu-cpuid.SSE42" not in result.labels
    if "avx2" in flags:
        assert result.labels[f"{NS}/cpu-cpuid.AVX2"] == "true"
