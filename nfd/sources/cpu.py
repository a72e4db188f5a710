"""cpu source: CPUID flags, model, power states, security, RDT, SST and topology.

Upstream executes CPUID in the worker (klauspost/cpuid v2). We read the
kernel's report instead, ``proc/cpuinfo`` under the host prefix, and translate
its flag spellings to upstream's names (``nfd.sources._cpuid_names``), so that a
captured host tree reproduces a node's labels. Only the first processor block
of cpuinfo is parsed: flags are the same on every CPU, and big machines print
hundreds of blocks.

Where upstream reads a CPUID leaf that cpuinfo does not carry, we use the
nearest kernel-exported fact, each noted at its function:
``model.hypervisor`` (clocksource / sys/hypervisor / DMI instead of leaf
0x40000000), ``security.sgx`` (EPC size from sysfs instead of leaf 0x12) and
``sst`` (nominal frequency from the model name instead of leaf 0x16).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.labels import NOT_LABEL_VALUE_CHARS
from nfd.sources._cpu_sysfs import (
    detect_coprocessor,
    detect_cstate,
    detect_pstate,
    detect_rdt,
    detect_security,
    detect_sst,
    detect_topology,
    int_or_none,
)
from nfd.sources._cpuid_names import (
    AMD_ONLY,
    ARM64_HWCAPS,
    CPUINFO_TO_CPUID,
    UNKNOWN_VENDOR,
    VENDOR_NAMES,
    X86_64_LEVELS,
)
from nfd.sources.base import Source, SourceContext

log = logging.getLogger(__name__)

# Upstream's default cpuid.attributeBlacklist at HEAD (26 entries).
DEFAULT_ATTRIBUTE_BLACKLIST = (
    "AVX10",
    "BMI1",
    "BMI2",
    "CLMUL",
    "CMOV",
    "CX16",
    "ERMS",
    "F16C",
    "HTT",
    "LZCNT",
    "MMX",
    "MMXEXT",
    "NX",
    "POPCNT",
    "RDRAND",
    "RDSEED",
    "RDTSCP",
    "SGX",
    "SGXLC",
    "SSE",
    "SSE2",
    "SSE3",
    "SSE4",
    "SSE42",
    "SSSE3",
    "TDX_GUEST",
)

# cpu.security elements kept out of labels (for rules and extended resources).
SECURITY_NO_LABEL = frozenset({"tdx.total_keys", "sgx.epc", "sev.encrypted_state_ids", "sev.asids"})

# Upstream reads <SYS>/sys/devices/cpu_{atom,core}/cpus, a doubled "sys" that
# never exists (reference §14.4); we read the path the label was meant for.
HYBRID_CPU_FILES = {
    "cpu_atom": "sys/devices/cpu_atom/cpus",
    "cpu_core": "sys/devices/cpu_core/cpus",
}

# One cpuinfo block is ~2 KiB; this is plenty for the first one.
CPUINFO_READ_LIMIT = 32 * 1024


# -- /proc/cpuinfo ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """The facts we use from the first processor block of /proc/cpuinfo."""

    vendor: str = ""
    family: int | None = None
    model: int | None = None
    model_name: str = ""
    # x86 "flags" words, or arm64 "Features" words, as the kernel spells them.
    flags: frozenset[str] = frozenset()
    siblings: int | None = None
    cores: int | None = None
    arch: str = ""  # "x86", "arm64" or "" when neither list is present


def first_cpuinfo_block(text: str) -> dict[str, str]:
    """Key/value pairs of the first processor block (keys stripped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo text (x86 or arm64) into a CpuInfo."""
    fields = first_cpuinfo_block(text)
    if "flags" in fields:
        arch, words = "x86", fields["flags"]
    elif "Features" in fields:
        arch, words = "arm64", fields["Features"]
    else:
        arch, words = "", ""
    return CpuInfo(
        vendor=fields.get("vendor_id", ""),
        family=int_or_none(fields.get("cpu family")),
        model=int_or_none(fields.get("model")),
        model_name=fields.get("model name", ""),
        flags=frozenset(words.split()),
        siblings=int_or_none(fields.get("siblings")),
        cores=int_or_none(fields.get("cpu cores")),
        arch=arch,
    )


def vendor_name(raw_vendor: str) -> str:
    """klauspost's Vendor name for a CPUID vendor string (``GenuineIntel`` -> ``Intel``)."""
    return VENDOR_NAMES.get(raw_vendor.strip(), UNKNOWN_VENDOR)


# -- cpuid flags --------------------------------------------------------------


def x86_64_level(names: Iterable[str]) -> int:
    """The x86-64 psABI level (0-4) the CPUID names reach, as klauspost's X64Level."""
    have = set(names)
    if not have & {"SYSCALL", "SYSEE"}:
        return 0
    level = 0
    for required in X86_64_LEVELS:
        if not required <= have:
            break
        level += 1
    return level


def _gate(names: set[str], needs: str, dependents: Iterable[str]) -> None:
    """Drop ``dependents`` when ``needs`` is absent, as klauspost checks them."""
    if needs not in names:
        names.difference_update(dependents)


def _avx_slow(vendor: str, family: int | None, model: int | None) -> bool:
    if family is None or model is None:
        return False
    if vendor == "Intel":
        return family == 6 and model < 60
    if vendor == "AMD":
        return family < 23 or (family == 23 and model < 49)
    return False


def _amd_tsa_immune(family: int | None, model: int | None) -> bool:
    """AMD parts klauspost marks TSA_L1_NO/TSA_SQ_NO without the CPUID bits."""
    if family is None:
        return False
    if family < 0x19:
        return True
    return family == 0x1A and model is not None and (model <= 0x4F or 0x60 <= model <= 0x7F)


def _derive_x86(names: set[str], info: CpuInfo, vendor: str) -> None:
    """Names that need more than one cpuinfo word, or the vendor."""
    if "xsave" in info.flags:
        names.add("OSXSAVE")
    threads_per_core = (info.siblings or 0) > (info.cores or 0) > 0
    if "ht" in info.flags and vendor in ("Intel", "AMD") and threads_per_core:
        names.add("HTT")
    _gate(names, "AVX", ("AVX2", "XOP", "FMA4", "AVXVNNI"))
    _gate(names, "OSXSAVE", ("FMA3",))
    _gate(names, "BMI1", ("BMI2",))
    if "AVX" in names and _avx_slow(vendor, info.family, info.model):
        names.add("AVXSLOW")
    if vendor == "Intel":
        names.discard("IBRS")
    if vendor != "AMD":
        names.difference_update(AMD_ONLY)
    elif _amd_tsa_immune(info.family, info.model):
        names.update(("TSA_L1_NO", "TSA_SQ_NO"))


TSA_STATUS = "sys/devices/system/cpu/vulnerabilities/tsa"


def tsa_no_from_sysfs(host: HostFS, info: CpuInfo) -> bool:
    """Whether CPUID 0x80000021 ECX has TSA_SQ_NO and TSA_L1_NO, told by the kernel: it keeps
    both bits out of cpuinfo, but marks an AMD CPU "Not affected" by TSA only when both are
    set or the CPU is not a Zen 3/4 part (Linux 6.16+, arch/x86/kernel/cpu/common.c). A Zen
    guest (``hypervisor``) or a family 0x19 (Zen 3/4) host has no other way to be "Not
    affected", so there the answer is the CPUID bits klauspost/cpuid reads. Elsewhere the
    kernel also says "Not affected" for parts without the bits: no answer from sysfs."""
    if vendor_name(info.vendor) != "AMD":
        return False
    if "hypervisor" not in info.flags and info.family != 0x19:
        return False
    return (host.read_text(TSA_STATUS) or "").strip() == "Not affected"


def cpuid_flags(info: CpuInfo) -> set[str]:
    """upstream's ``cpu.cpuid`` flag names for a parsed cpuinfo block."""
    if info.arch == "arm64":
        return {word.upper() for word in info.flags if word.upper() in ARM64_HWCAPS}
    if info.arch != "x86":
        return set()
    names: set[str] = set()
    for word in info.flags:
        names.update(CPUINFO_TO_CPUID.get(word, ()))
    _derive_x86(names, info, vendor_name(info.vendor))
    level = x86_64_level(names)
    names.update(f"X86_64_V{n}" for n in range(1, level + 1))
    return names


# -- model and hypervisor -----------------------------------------------------

# Clocksources Linux registers after it identified the hypervisor by CPUID
# leaf 0x40000000, the same leaf klauspost reads; names as klauspost prints them.
CLOCKSOURCE_HYPERVISORS = {
    "kvm-clock": "kvm",
    "hyperv_clocksource_tsc_page": "msvm",
    "hyperv_clocksource_msr": "msvm",
    "xen": "xenhvm",
}
HYPERVISOR_TYPES = {"xen": "xenhvm"}
# DMI sys_vendor prefixes of platforms whose hypervisor is unambiguous.
DMI_HYPERVISORS = (
    ("QEMU", "kvm"),
    ("KubeVirt", "kvm"),
    ("Red Hat", "kvm"),
    ("OpenStack", "kvm"),
    ("Amazon EC2", "kvm"),
    ("Google", "kvm"),
    ("DigitalOcean", "kvm"),
    ("Hetzner", "kvm"),
    ("Alibaba Cloud", "kvm"),
    ("VMware", "vmware"),
    ("Microsoft Corporation", "msvm"),
    ("Xen", "xenhvm"),
    ("BHYVE", "bhyve"),
    ("Apple", "apple"),
)
DMI_VENDOR_FILES = ("sys/devices/virtual/dmi/id/sys_vendor", "sys/class/dmi/id/sys_vendor")


def sanitize_value(raw: str) -> str:
    """Replace runs of characters not allowed in label values by ``_``, as upstream."""
    return NOT_LABEL_VALUE_CHARS.sub("_", raw)


def hypervisor_from_files(
    hypervisor_type: str | None, clocksources: str | None, dmi_vendor: str | None
) -> str:
    """Name the hypervisor from what Linux exports; ``unknown`` if nothing tells.

    Order: sys/hypervisor/type (Xen sets it), then the clocksources Linux
    registered after detecting the hypervisor, then DMI, which firmware writes
    and which may name a cloud rather than its hypervisor.
    """
    if hypervisor_type:
        kind = hypervisor_type.strip().lower()
        return HYPERVISOR_TYPES.get(kind, sanitize_value(kind)) or "unknown"
    for source in (clocksources or "").split():
        if source in CLOCKSOURCE_HYPERVISORS:
            return CLOCKSOURCE_HYPERVISORS[source]
    for prefix, name in DMI_HYPERVISORS:
        if dmi_vendor and dmi_vendor.strip().startswith(prefix):
            return name
    return "unknown"


def detect_hypervisor(host: HostFS, names: set[str]) -> str:
    """``none`` without the CPUID hypervisor bit, else the hypervisor's name."""
    if "HYPERVISOR" not in names:
        return "none"
    dmi = next((v for v in map(host.read_attr, DMI_VENDOR_FILES) if v), None)
    return hypervisor_from_files(
        host.read_attr("sys/hypervisor/type"),
        host.read_attr("sys/devices/system/clocksource/clocksource0/available_clocksource"),
        dmi,
    )


def cpu_model(info: CpuInfo, hypervisor: str) -> dict[str, str]:
    """``cpu.model`` attributes (x86 only: cpuinfo of other arches lacks the ids)."""
    if info.arch != "x86":
        return {}
    model = {"vendor_id": vendor_name(info.vendor), "hypervisor": hypervisor}
    if info.family is not None:
        model["family"] = str(info.family)
    if info.model is not None:
        model["id"] = str(info.model)
    return model


# -- the source ---------------------------------------------------------------


def cpuid_label_filter(config: Mapping[str, Any]) -> tuple[frozenset[str], bool]:
    """(names, is_whitelist): a non-empty whitelist wins over the blacklist."""
    cpuid = config.get("cpuid") or {}
    whitelist = cpuid.get("attributeWhitelist") or []
    if whitelist:
        return frozenset(whitelist), True
    return frozenset(cpuid.get("attributeBlacklist") or []), False


def cpuid_flag_labels(flags: Iterable[str], config: Mapping[str, Any]) -> dict[str, str]:
    """``cpuid.<FLAG>=true`` for each flag the black/white list lets through."""
    names, whitelist = cpuid_label_filter(config)
    return {f"cpuid.{flag}": "true" for flag in flags if (flag in names) == whitelist}


# Attribute sets whose every element becomes a label, with the label prefix.
ATTRIBUTE_LABEL_PREFIXES = (
    ("cpu.cpuid", "cpuid."),
    ("cpu.model", "model."),
    ("cpu.cstate", "cstate."),
    ("cpu.pstate", "pstate."),
    ("cpu.sst", "power.sst_"),
)
# (feature set, element, label) for elements published one by one.
SINGLE_ATTRIBUTE_LABELS = (
    ("cpu.topology", "hardware_multithreading", "hardware_multithreading"),
    ("cpu.coprocessor", "nx_gzip", "coprocessor.nx_gzip"),
)


class CpuSource(Source):
    name = "cpu"

    def default_config(self) -> dict[str, Any]:
        return {
            "cpuid": {
                "attributeBlacklist": list(DEFAULT_ATTRIBUTE_BLACKLIST),
                "attributeWhitelist": [],
            }
        }

    def discover(self, ctx: SourceContext) -> Features:
        host, features = ctx.host, Features()
        text = host.read_text("proc/cpuinfo", limit=CPUINFO_READ_LIMIT)
        info = parse_cpuinfo(text or "")
        names = cpuid_flags(info)
        if names and tsa_no_from_sysfs(host, info):
            names.update(("TSA_L1_NO", "TSA_SQ_NO"))
        if text is None:
            log.debug("cpu: no proc/cpuinfo under %s: no cpuid or model features", host.prefix)
        else:
            features.add_flags("cpu.cpuid", names)
            model = cpu_model(info, detect_hypervisor(host, names))
            if model:
                features.add_attributes("cpu.model", model)
        cstate = detect_cstate(host)
        if cstate is not None:
            features.add_attributes("cpu.cstate", cstate)
        # Upstream publishes these sets even when empty.
        features.add_attributes("cpu.pstate", detect_pstate(host))
        features.add_attributes("cpu.rdt", detect_rdt(host, info.flags))
        features.add_attributes("cpu.security", detect_security(host, names))
        features.add_attributes("cpu.sst", detect_sst(host, info.model_name))
        features.add_attributes("cpu.topology", detect_topology(host))
        features.add_attributes("cpu.coprocessor", detect_coprocessor(host))
        return features

    def labels(self, features: Features, ctx: SourceContext) -> dict[str, str]:
        labels = cpuid_flag_labels(features.flags.get("cpu.cpuid", set()), ctx.config)
        for feature_set, prefix in ATTRIBUTE_LABEL_PREFIXES:
            for key, value in features.attributes.get(feature_set, {}).items():
                labels[prefix + key] = value
        for key, value in features.attributes.get("cpu.security", {}).items():
            if key not in SECURITY_NO_LABEL:
                labels[f"security.{key}"] = value
        for feature_set, key, label in SINGLE_ATTRIBUTE_LABELS:
            found = features.attributes.get(feature_set, {}).get(key)
            if found is not None:
                labels[label] = found
        for label, rel in HYBRID_CPU_FILES.items():
            if ctx.host.read_attr(rel) is not None:
                labels[label] = "true"
        return labels


SOURCE = CpuSource()
