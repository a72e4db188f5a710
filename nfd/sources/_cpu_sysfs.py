"""sysfs-based parts of the cpu source: power states, security, RDT, topology.

Each ``detect_*`` function returns the elements of one ``cpu.<set>`` attribute
feature set, read through HostFS; unreadable files cost only their element or
set, as upstream (see each function for what "undeterminable" means).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nfd.hostfs import HostFS

CPU_DEVICES = "sys/bus/cpu/devices"
CPU_SYSFS = "sys/devices/system/cpu"
MISC_CAPACITY_FILES = ("sys/fs/cgroup/misc.capacity", "sys/fs/cgroup/misc/misc.capacity")

# Brand-string frequency units, in MHz.
_FREQ_UNITS_MHZ = {"M": 1, "G": 1000, "T": 1000000}
_NOMINAL_FREQUENCY = re.compile(r"@\s*(\d+(?:\.\d+)?)\s*([MGT])Hz")


def int_or_none(value: str | None) -> int | None:
    """A decimal (or ``0x``-prefixed) integer, or None when missing or not a number."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return int(value, 0)  # hex such as "0x8f" in cpuinfo
    except ValueError:
        return None


def bool_str(value: bool) -> str:
    return "true" if value else "false"


# -- power: cstate, pstate, sst -----------------------------------------------


def detect_cstate(host: HostFS) -> dict[str, str] | None:
    """``cpu.cstate``: None when undeterminable, {} when intel_idle is not in use."""
    if not host.is_dir(CPU_SYSFS):
        return None
    if not host.exists(f"{CPU_SYSFS}/cpuidle"):
        return {}
    driver = host.read_attr(f"{CPU_SYSFS}/cpuidle/current_driver")
    if driver is None:
        return None
    if driver != "intel_idle":
        return {}
    max_cstate = int_or_none(host.read_attr("sys/module/intel_idle/parameters/max_cstate"))
    if max_cstate is None:
        return None
    return {"enabled": bool_str(max_cstate > 0)}


def _common_governor(host: HostFS) -> str:
    """The scaling governor all used cpufreq policies agree on, or ""."""
    governor = ""
    for policy in host.listdir(f"{CPU_SYSFS}/cpufreq"):
        base = f"{CPU_SYSFS}/cpufreq/{policy}"
        if not host.read_attr(f"{base}/affected_cpus"):
            continue
        current = host.read_attr(f"{base}/scaling_governor")
        if current is None:
            continue
        if governor and current != governor:
            return ""
        governor = current
    return governor


def detect_pstate(host: HostFS) -> dict[str, str]:
    """``cpu.pstate`` from the intel_pstate driver; empty when it is off or absent."""
    pstate_dir = f"{CPU_SYSFS}/intel_pstate"
    status = host.read_attr(f"{pstate_dir}/status")
    if not status or status == "off":
        return {}
    features = {"status": status}
    no_turbo = host.read_attr(f"{pstate_dir}/no_turbo")
    if no_turbo:
        features["turbo"] = bool_str(no_turbo[0] == "0")
    if status == "active":
        governor = _common_governor(host)
        if governor:
            features["scaling_governor"] = governor
    return features


def nominal_base_mhz(model_name: str) -> int | None:
    """Nominal base frequency from the brand string ("... @ 2.30GHz" -> 2300).

    Upstream reads CPUID leaf 0x16; the brand string carries the same figure
    on the Xeons that have SST-BF.
    """
    match = _NOMINAL_FREQUENCY.search(model_name)
    if match is None:
        return None
    return int(float(match[1]) * _FREQ_UNITS_MHZ[match[2]])


def detect_sst(host: HostFS, model_name: str) -> dict[str, str]:
    """``cpu.sst``: ``bf.enabled`` when some CPU's base frequency beats nominal."""
    nominal = nominal_base_mhz(model_name)
    if not nominal:
        return {}
    for cpu in host.listdir(CPU_DEVICES):
        khz = int_or_none(host.read_attr(f"{CPU_DEVICES}/{cpu}/cpufreq/base_frequency"))
        if khz is not None and khz // 1000 > nominal:
            return {"bf.enabled": "true"}
    return {}


# -- security, rdt, topology, coprocessor -------------------------------------


def parse_misc_capacity(text: str) -> dict[str, int]:
    """cgroup ``misc.capacity`` lines (``tdx 31``) as a mapping."""
    capacity: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isascii() and parts[1].isdigit():
            capacity[parts[0]] = int(parts[1])
    return capacity


def _misc_capacity(host: HostFS) -> dict[str, int]:
    for rel in MISC_CAPACITY_FILES:
        text = host.read_text(rel)
        if text is not None:
            return parse_misc_capacity(text)
    return {}


def _kvm_param_on(host: HostFS, module: str, param: str) -> bool:
    value = host.read_text(f"sys/module/{module}/parameters/{param}") or ""
    return value[:1] in ("1", "Y")


def sgx_epc_bytes(host: HostFS, misc: Mapping[str, int]) -> int:
    """EPC size the kernel manages: per-node ``x86/sgx_total_bytes``, else misc ``sgx_epc``.

    Upstream sums CPUID leaf 0x12 EPC sections; the kernel exports the same sum.
    """
    total = 0
    for node in host.listdir("sys/devices/system/node"):
        if node.startswith("node"):
            size = host.read_attr(f"sys/devices/system/node/{node}/x86/sgx_total_bytes")
            total += int_or_none(size) or 0
    return total or misc.get("sgx_epc", 0)


def _sgx(host: HostFS, names: set[str], misc: Mapping[str, int]) -> dict[str, str]:
    epc = sgx_epc_bytes(host, misc) if "SGX" in names else 0
    return {"sgx.enabled": "true", "sgx.epc": str(epc)} if epc > 0 else {}


def _tdx(host: HostFS, names: set[str], misc: Mapping[str, int]) -> dict[str, str]:
    elems: dict[str, str] = {}
    # Upstream compares the whole file with "Y\n".
    if host.read_text("sys/module/kvm_intel/parameters/tdx") == "Y\n":
        elems["tdx.enabled"] = "true"
        if "tdx" in misc:
            elems["tdx.total_keys"] = str(misc["tdx"])
    if "TDX_GUEST" in names:
        elems["tdx.protected"] = "true"
    return elems


def _sev(host: HostFS, misc: Mapping[str, int]) -> dict[str, str]:
    elems: dict[str, str] = {}
    if _kvm_param_on(host, "kvm_amd", "sev"):
        elems["sev.enabled"] = "true"
        if "sev" in misc:
            elems["sev.asids"] = str(misc["sev"])
    if _kvm_param_on(host, "kvm_amd", "sev_es"):
        elems["sev.es.enabled"] = "true"
        if "sev_es" in misc:
            elems["sev.encrypted_state_ids"] = str(misc["sev_es"])
    if _kvm_param_on(host, "kvm_amd", "sev_snp"):
        elems["sev.snp.enabled"] = "true"
    return elems


def detect_security(host: HostFS, names: set[str]) -> dict[str, str]:
    """``cpu.security``: SGX, TDX (host and guest) and SEV as upstream names them."""
    misc = _misc_capacity(host)
    return {**_sgx(host, names, misc), **_tdx(host, names, misc), **_sev(host, misc)}


def detect_rdt(host: HostFS, flags: frozenset[str]) -> dict[str, str]:
    """``cpu.rdt`` from the kernel's RDT flags (cqm*, rdt_a, cat_l3, cat_l2, mba)."""
    rdt: dict[str, str] = {}
    if {"cqm", "cqm_llc"} <= flags:
        rdt["RDTMON"] = "true"
        if "cqm_occup_llc" in flags:
            rdt["RDTCMT"] = "true"
        if {"cqm_mbm_total", "cqm_mbm_local"} <= flags:
            rdt["RDTMBM"] = "true"
    if "rdt_a" in flags:
        for flag, name in (("cat_l3", "RDTL3CA"), ("cat_l2", "RDTL2CA"), ("mba", "RDTMBA")):
            if flag in flags:
                rdt[name] = "true"
        closids = int_or_none(host.read_attr("sys/fs/resctrl/info/L3/num_closids"))
        if "RDTL3CA" in rdt and closids is not None:
            rdt["RDTL3CA_NUM_CLOSID"] = str(closids - 1)  # minus the default group
    return rdt


def has_thread_siblings(siblings_list: str) -> bool:
    """True when a thread_siblings_list names more than one CPU ("0,4" or "0-1")."""
    return "," in siblings_list or "-" in siblings_list


def detect_topology(host: HostFS) -> dict[str, str]:
    """``cpu.topology``; any unreadable CPU makes it empty, as upstream."""
    if not host.is_dir(CPU_DEVICES):
        return {}
    multithreading, packages = False, set()
    for cpu in host.listdir(CPU_DEVICES):
        siblings = host.read_attr(f"{CPU_DEVICES}/{cpu}/topology/thread_siblings_list")
        package = host.read_attr(f"{CPU_DEVICES}/{cpu}/topology/physical_package_id")
        if siblings is None or package is None:
            return {}
        multithreading = multithreading or has_thread_siblings(siblings)
        packages.add(package)
    return {"hardware_multithreading": bool_str(multithreading), "socket_count": str(len(packages))}


def detect_coprocessor(host: HostFS) -> dict[str, str]:
    """``cpu.coprocessor``: the POWER NX gzip accelerator."""
    if host.exists("sys/devices/vio/ibm,compression-v1/nx_gzip_caps"):
        return {"nx_gzip": "true"}
    return {}
