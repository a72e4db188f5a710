"""Fuzz the source parsers: os-release, kernel version and kconfig, module lists,
/proc/cpuinfo, sysfs attribute helpers, GPU driver files, feature files, durations and
the worker config; and whole host trees of hostile sysfs/procfs files through every
source, which must never fail or emit an invalid label."""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from nfd.durations import parse_duration
from nfd.gpu import devices as gpu_devices
from nfd.hostfs import HostFS
from nfd.labels import name_errors, value_errors
from nfd.sources import SOURCE_NAMES, _cpu_sysfs, cpu, kernel, local, memory, network, pci, system
from nfd.worker.config import ConfigError, WorkerConfig, parse_config_text
from nfd.worker.discovery import compute_labels, discover_features
from tests.fuzz.common import FUZZ, any_text, count
from tests.reliability.recording import Record


def _is_str_map(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


@FUZZ
@given(any_text)
def test_os_release(record: Record, text: str) -> None:
    count(record, "os-release (nfd.sources.system.parse_os_release)")
    assert _is_str_map(system.parse_os_release(text))


@FUZZ
@given(any_text)
def test_kernel_parsers(record: Record, text: str) -> None:
    count(record, "Kernel version, kconfig, modules, modules.builtin (nfd.sources.kernel)")
    assert _is_str_map(kernel.parse_osrelease_version(text))
    kconfig = kernel.parse_kconfig(text)
    assert _is_str_map(kconfig)
    for value in kconfig.values():
        kernel.legacy_kconfig_value(value)
    assert all(isinstance(m, str) for m in kernel.parse_modules(text))
    assert all(isinstance(m, str) for m in kernel.parse_modules_builtin(text))
    assert all(isinstance(p, str) for p in kernel.kconfig_search_paths(text))


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=200))
def test_kconfig_gunzip(record: Record, raw: bytes, payload: bytes) -> None:
    count(record, "Compressed kconfig (/proc/config.gz) of random and truncated gzip data")
    for data in (raw, zlib.compress(payload)[: len(raw) % 50], _gzip(payload)):
        try:
            out = kernel.gunzip(data, limit=1000)
        except zlib.error:
            continue
        assert len(out) <= 1000


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@FUZZ
@given(any_text)
def test_cpuinfo(record: Record, text: str) -> None:
    count(record, "/proc/cpuinfo (nfd.sources.cpu.parse_cpuinfo and flag derivation)")
    info = cpu.parse_cpuinfo(text)
    flags = cpu.cpuid_flags(info)
    assert all(isinstance(f, str) for f in flags)
    cpu.vendor_name(info.vendor)
    cpu.x86_64_level(flags)
    cpu.sanitize_value(text)
    assert _is_str_map(cpu.cpu_model(info, cpu.sanitize_value(text)))
    assert _is_str_map(cpu.cpuid_flag_labels(flags, {}))


@FUZZ
@given(any_text, st.sampled_from(pci.MANDATORY_ATTRS + pci.OPTIONAL_ATTRS))
def test_sysfs_attribute_helpers(record: Record, text: str, attr: str) -> None:
    count(record, "sysfs attribute values (pci, cpu sysfs, memory, network helpers)")
    value = pci.pci_attr_value(text, attr)
    assert isinstance(value, str)
    if attr == "class":
        assert len(value) <= 4 or text.removeprefix("0x").strip() == value
    pci.class_whitelisted(value, ["03", "0b40"])
    _cpu_sysfs.int_or_none(text)
    _cpu_sysfs.nominal_base_mhz(text)
    _cpu_sysfs.has_thread_siblings(text)
    assert all(isinstance(v, int) for v in _cpu_sysfs.parse_misc_capacity(text).values())
    memory.count_swap_lines(text)
    memory.hugepage_size_name(text)
    network.positive_int(text)


@FUZZ
@given(any_text)
def test_gpu_driver_files(record: Record, text: str) -> None:
    count(record, "NVIDIA driver files (/proc/driver/nvidia/version, gpus/*/information)")
    gpu_devices.pci_hex(text)
    gpu_devices.pci_class(text)
    assert _is_str_map(gpu_devices.parse_information(text))
    version = gpu_devices.parse_driver_version(text)
    assert version is None or all(isinstance(v, str) for v in version)
    cleaned = gpu_devices.sanitise_label_value(text)
    assert value_errors(cleaned) == [], (text, cleaned)


@FUZZ
@given(st.one_of(any_text, st.binary(max_size=400).map(local._decode)))
def test_feature_file_text(record: Record, text: str) -> None:
    count(record, "Feature files (nfd.sources.local.parse_feature_text, any bytes)")
    parsed = local.parse_feature_text(text, "fuzz")
    assert _is_str_map(parsed.labels) and _is_str_map(parsed.features)
    for key, value in parsed.labels.items():
        assert key and "\x00" not in key + value
        (key + value).encode("utf-8")  # no undecodable bytes slip through


@FUZZ
@given(any_text)
def test_rfc3339_and_durations(record: Record, text: str) -> None:
    count(record, "expiry-time directive (RFC 3339) and duration strings")
    try:
        local.parse_rfc3339(text)
    except ValueError:
        pass
    try:
        assert parse_duration(text) >= 0 or True
    except ValueError:
        pass


@FUZZ
@given(any_text)
def test_worker_config(record: Record, text: str) -> None:
    count(record, "Worker config file (nfd.worker.config.parse_config_text)")
    try:
        config = parse_config_text(text, "fuzz.conf")
    except ConfigError as err:
        assert "fuzz.conf" in str(err)
        return
    assert isinstance(config, WorkerConfig)


# --------------------------------------------------------------------------- host trees

KVER = "6.1.0-fuzz"
TYPICAL: dict[str, str] = {
    "etc/os-release": 'ID=rhel\nVERSION_ID="9.4"\n',
    "proc/sys/kernel/osrelease": KVER + "\n",
    "proc/cpuinfo": (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
        "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu sse sse2 avx avx2 "
        "avx512f\nsiblings\t: 2\ncpu cores\t: 1\n\n"
    ),
    "proc/swaps": "Filename Type Size Used Priority\n/dev/sda2 partition 100 0 -2\n",
    "proc/modules": "nvidia 100 0 - Live 0x0\n",
    f"lib/modules/{KVER}/modules.builtin": "kernel/drivers/nvme/host/nvme.ko\n",
    f"boot/config-{KVER}": "CONFIG_NO_HZ=y\nCONFIG_PREEMPT=m\n",
    "proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n",
    "proc/driver/nvidia/gpus/0000:1b:00.0/information": "Model: \t NVIDIA H100\n",
    "sys/module/nvidia/version": "550.54.15\n",
    "sys/devices/virtual/dmi/id/product_name": "PowerEdge\n",
    "sys/devices/virtual/dmi/id/sys_vendor": "Dell Inc.\n",
    "sys/fs/cgroup/misc.capacity": "sgx_epc 1000\nsev 10\n",
    "sys/fs/selinux/enforce": "1\n",
    "sys/hypervisor/type": "xen\n",
    "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages": "4\n",
    "sys/devices/system/node/node0/cpulist": "0-1\n",
    "sys/devices/system/cpu/cpu0/topology/thread_siblings_list": "0-1\n",
    "sys/devices/system/cpu/intel_pstate/status": "active\n",
    "sys/devices/system/cpu/cpuidle/current_driver": "intel_idle\n",
    "sys/block/sda/queue/rotational": "0\n",
    "sys/block/sda/queue/zoned": "none\n",
    "sys/class/net/eth0/operstate": "up\n",
    "sys/class/net/eth0/mtu": "1500\n",
    "sys/class/net/eth0/speed": "25000\n",
    "sys/class/net/eth0/device/sriov_totalvfs": "8\n",
    "sys/bus/usb/devices/1-1/bDeviceClass": "00\n",
    "sys/bus/usb/devices/1-1/idVendor": "0781\n",
    "sys/bus/usb/devices/1-1/idProduct": "5567\n",
    "sys/bus/usb/devices/1-1/serial": "ABC\n",
    "sys/bus/usb/devices/1-1:1.0/bInterfaceClass": "08\n",
}
for _attr, _value in {
    "class": "0x030200",
    "vendor": "0x10de",
    "device": "0x2330",
    "subsystem_vendor": "0x10de",
    "subsystem_device": "0x16c1",
    "sriov_totalvfs": "32",
    "numa_node": "0",
    "current_link_speed": "32.0 GT/s PCIe",
    "current_link_width": "16",
    "iommu_group/type": "DMA",
}.items():
    TYPICAL[f"sys/bus/pci/devices/0000:1b:00.0/{_attr}"] = _value + "\n"

HOSTILE = st.one_of(
    st.binary(max_size=120),
    any_text.map(lambda t: t.encode("utf-8", "surrogateescape")),
    st.sampled_from(
        [
            b"",
            b"\n",
            b"-1",
            b"0x",
            b"0xzz",
            b"99999999999999999999999",
            b"\xff\xfe\x00",
            b"a" * 5000,
            b"nan",
            b"1e400",
            b"../../etc",
            b"0" * 64,
            "²".encode(),
            "sgx_epc ²\n".encode(),
            "١٢".encode(),
            b"6.1.0\x00x",  # a NUL in a value later used in a path
        ]
    ),
)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(TYPICAL)), st.one_of(st.none(), HOSTILE)))
@example(changes={"proc/sys/kernel/osrelease": b"6.1.0\x00x"})  # a NUL in a path
@example(changes={"sys/fs/cgroup/misc.capacity": "sgx_epc \u00b2\n".encode()})
def test_hostile_host_tree_through_every_source(
    record: Record, changes: dict[str, bytes | None]
) -> None:
    count(record, "Host trees with hostile sysfs/procfs files through every source")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, text in TYPICAL.items():
            data = changes.get(rel, text.encode()) if rel in changes else text.encode()
            if data is None:
                continue  # the file is missing
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (root / "sys/bus/pci/devices/0000:1b:00.0/driver").symlink_to("/nonexistent/nvidia")
        host = HostFS(str(root) + "/")
        config = WorkerConfig()
        sources = [s for s in SOURCE_NAMES if s not in ("local", "custom")]
        warnings: list[str] = []
        features = discover_features(host, config, "fuzz-node", sources, warnings)
        labels = compute_labels(features, host, config, "fuzz-node", warnings)
    # A missing mandatory directory is the sources' own clear error (as upstream's);
    # anything else that made a source fail is a crash on hostile input.
    crashed = [
        w
        for w in warnings
        if ("discovery failed" in w or "labelling failed" in w) and "no such directory" not in w
    ]
    assert crashed == [], crashed
    for key, value in labels.items():
        assert not name_errors(key) and not value_errors(value), (key, value)
