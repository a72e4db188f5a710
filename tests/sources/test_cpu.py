"""cpu source: cpuinfo parsing, the flag-name table, sysfs feature sets, labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources._cpu_sysfs import nominal_base_mhz
from nfd.sources._cpuid_names import ARM64_HWCAPS, CPUINFO_TO_CPUID, DERIVED_NAMES, NOT_VISIBLE
from nfd.sources.cpu import (
    DEFAULT_ATTRIBUTE_BLACKLIST,
    SOURCE,
    cpu_model,
    cpuid_flags,
    hypervisor_from_files,
    parse_cpuinfo,
    vendor_name,
    x86_64_level,
)
from nfd.worker.config import build_config
from nfd.worker.discovery import compute_labels, discover_features
from tests.fixture_paths import PROCFS

REPO = Path(__file__).resolve().parents[2]
NS = "feature.node.kubernetes.io/"

# klauspost/cpuid v2 x86 FeatureID names (reference §2.1), for typo checks.
KLAUSPOST_X86 = set(
    """ADX AESNI AMD3DNOW AMD3DNOWEXT AMXBF16 AMXFP16 AMXINT8 AMXFP8 AMXTILE AMXTF32 AMXCOMPLEX
    AMXTRANSPOSE APX_F AVX AVX10 AVX10_128 AVX10_256 AVX10_512 AVX2 AVX512BF16 AVX512BITALG
    AVX512BMM AVX512BW AVX512CD AVX512DQ AVX512ER AVX512F AVX512FP16 AVX512IFMA AVX512PF
    AVX512VBMI AVX512VBMI2 AVX512VL AVX512VNNI AVX512VP2INTERSECT AVX512VPOPCNTDQ AVXIFMA
    AVXNECONVERT AVXSLOW AVXVNNI AVXVNNIINT8 AVXVNNIINT16 BHI_CTRL BMI1 BMI2 CETIBT CETSS
    CLDEMOTE CLMUL CLZERO CMOV CMPCCXADD CMPSB_SCADBS_SHORT CMPXCHG8 CPBOOST CPPC CX16
    EFER_LMSLE_UNS ENQCMD ERMS F16C FLUSH_L1D FMA3 FMA4 FP128 FP256 FSRM FXSR FXSROPT GFNI HLE
    HRESET HTT HWA HYBRID_CPU HYPERVISOR IA32_ARCH_CAP IA32_CORE_CAP IBPB IBPB_BRTYPE IBRS
    IBRS_PREFERRED IBRS_PROVIDES_SMP IBS IBSBRNTRGT IBSFETCHSAM IBSFFV IBSOPCNT IBSOPCNTEXT
    IBSOPSAM IBSRDWROPCNT IBSRIPINVALIDCHK IBS_FETCH_CTLX IBS_OPDATA4 IBS_OPFUSE IBS_PREVENTHOST
    IBS_ZEN4 IDPRED_CTRL INT_WBINVD INVLPGB KEYLOCKER KEYLOCKERW LAHF LAM LBRVIRT LZCNT
    MCAOVERFLOW MCDT_NO MCOMMIT MD_CLEAR MMX MMXEXT MOVBE MOVDIR64B MOVDIRI MOVSB_ZL MOVU MPX
    MSRIRC MSRLIST MSR_PAGEFLUSH NRIPS NX OSXSAVE PCONFIG POPCNT PPIN PREFETCHI PSFD RDPRU RDRAND
    RDSEED RDTSCP RRSBA_CTRL RTM RTM_ALWAYS_ABORT SBPB SERIALIZE SEV SEV_64BIT SEV_ALTERNATIVE
    SEV_DEBUGSWAP SEV_ES SEV_RESTRICTED SEV_SNP SGX SGXLC SGXPQC SHA SME SME_COHERENT SM3_X86
    SM4_X86 SPEC_CTRL_SSBD SRBDS_CTRL SRSO_MSR_FIX SRSO_NO SRSO_USER_KERNEL_NO SSE SSE2 SSE3 SSE4
    SSE42 SSE4A SSSE3 STIBP STIBP_ALWAYSON STOSB_SHORT SUCCOR SVM SVMDA SVMFBASID SVML SVMNP
    SVMPF SVMPFT SYSCALL SYSEE TBM TDX_GUEST TLB_FLUSH_NESTED TME TOPEXT TSA_L1_NO TSA_SQ_NO
    TSA_VERW_CLEAR TSCRATEMSR TSXLDTRK VAES VMCBCLEAN VMPL VMSA_REGPROT VMX VPCLMULQDQ VTE
    WAITPKG WBNOINVD WRMSRNS X87 XGETBV1 XOP XSAVE XSAVEC XSAVEOPT XSAVES
    PMU_FIXEDCOUNTER_CYCLES PMU_FIXEDCOUNTER_REFCYCLES PMU_FIXEDCOUNTER_INSTRUCTIONS
    PMU_FIXEDCOUNTER_TOPDOWN_SLOTS""".split()
)

# Flags of the i7-8650U in the procfs fixture, translated by hand from its cpuinfo.
I7_8650U_CPUID = set(
    """ADX AESNI AVX AVX2 BMI1 BMI2 CLMUL CMOV CMPXCHG8 CX16 ERMS F16C FLUSH_L1D FMA3 FXSR
    FXSROPT HLE HTT IBPB LAHF LZCNT MD_CLEAR MMX MOVBE MPX NX OSXSAVE POPCNT RDRAND RDSEED RDTSCP
    RTM SPEC_CTRL_SSBD SSE SSE2 SSE3 SSE4 SSE42 SSSE3 STIBP SYSCALL SYSEE VMX X87 XGETBV1 XSAVE
    XSAVEC XSAVEOPT XSAVES X86_64_V1 X86_64_V2 X86_64_V3""".split()
)

V1_FLAGS = "fpu cx8 sep cmov mmx fxsr sse sse2 syscall"
V2_FLAGS = V1_FLAGS + " cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"
V3_FLAGS = V2_FLAGS + " avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"
V4_FLAGS = V3_FLAGS + " avx512f avx512bw avx512cd avx512dq avx512vl"


def write_tree(root: Path, files: dict[str, str]) -> HostFS:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return HostFS(str(root) + "/")


def cpuinfo(flags: str, vendor: str = "GenuineIntel", family: int = 6, model: int = 85) -> str:
    return (
        f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: Test CPU @ 2.30GHz\nsiblings\t: 4\ncpu cores\t: 4\nflags\t\t: {flags}\n\n"
        "processor\t: 1\nvendor_id\t: OtherVendor\nflags\t\t: nothing here\n"
    )


def discover(host: HostFS, config: dict | None = None) -> Features:
    return SOURCE.discover(SourceContext(host, config or SOURCE.default_config()))


def labels(host: HostFS, features: Features, config: dict | None = None) -> dict[str, str]:
    return SOURCE.labels(features, SourceContext(host, config or SOURCE.default_config()))


# -- cpuinfo parsing ------------------------------------------------------------


def test_parse_cpuinfo_reads_only_the_first_block():
    info = parse_cpuinfo(cpuinfo("fpu sse avx"))
    assert info.vendor == "GenuineIntel"
    assert (info.family, info.model, info.siblings, info.cores) == (6, 85, 4, 4)
    assert info.flags == {"fpu", "sse", "avx"}
    assert info.arch == "x86"
    assert info.model_name == "Test CPU @ 2.30GHz"


def test_parse_cpuinfo_of_the_procfs_fixture():
    info = parse_cpuinfo((PROCFS / "proc/cpuinfo").read_text())
    assert info.vendor == "GenuineIntel"
    assert (info.family, info.model) == (6, 142)
    assert (info.siblings, info.cores) == (8, 4)
    assert "sse4_2" in info.flags and "avx2" in info.flags


def test_parse_cpuinfo_arm64_and_garbage():
    arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd aes sve bogus\nCPU part\t: 0xd0c\n")
    assert arm.arch == "arm64"
    assert cpuid_flags(arm) == {"FP", "ASIMD", "AES", "SVE"}
    junk = parse_cpuinfo("no colon here\n\x00\x01binary")
    assert junk.arch == "" and cpuid_flags(junk) == set()
    assert parse_cpuinfo("").flags == frozenset()


def test_vendor_names_are_klauspost_names():
    assert vendor_name("GenuineIntel") == "Intel"
    assert vendor_name("AuthenticAMD") == "AMD"
    assert vendor_name("HygonGenuine") == "Hygon"
    assert vendor_name("  Shanghai  ") == "VendorUnknown"


# -- cpuid names ----------------------------------------------------------------


def test_fixture_cpu_gets_upstream_names_not_cpuinfo_spellings():
    info = parse_cpuinfo((PROCFS / "proc/cpuinfo").read_text())
    assert cpuid_flags(info) == I7_8650U_CPUID


@pytest.mark.parametrize(
    "word, name",
    [
        ("aes", "AESNI"),
        ("pclmulqdq", "CLMUL"),
        ("sse4_1", "SSE4"),
        ("sse4_2", "SSE42"),
        ("fma", "FMA3"),
        ("pni", "SSE3"),
        ("lahf_lm", "LAHF"),
        ("sha_ni", "SHA"),
        ("avx512_vnni", "AVX512VNNI"),
        ("hypervisor", "HYPERVISOR"),
        ("cx8", "CMPXCHG8"),
        ("sep", "SYSEE"),
        ("fpu", "X87"),
    ],
)
def test_single_flag_translation(word, name):
    names = cpuid_flags(parse_cpuinfo(cpuinfo(f"xsave avx {word}")))
    assert name in names
    assert word.upper() not in names or word.upper() == name


def test_abm_means_lzcnt_and_popcnt():
    assert {"LZCNT", "POPCNT"} <= cpuid_flags(parse_cpuinfo(cpuinfo("abm")))


def test_table_values_are_klauspost_names():
    for word, names in CPUINFO_TO_CPUID.items():
        assert word == word.lower(), word
        assert set(names) <= KLAUSPOST_X86, word
    assert set(DERIVED_NAMES) <= KLAUSPOST_X86
    assert set(NOT_VISIBLE) <= KLAUSPOST_X86
    mapped = {n for names in CPUINFO_TO_CPUID.values() for n in names}
    assert not mapped & set(NOT_VISIBLE)


def test_docs_table_matches_the_code():
    doc = (REPO / "docs" / "sources-cpu-kernel-memory.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ((?:`[A-Z0-9_]+`(?:, )?)+) \|$", doc, re.M)
    documented = {word: tuple(re.findall(r"`([A-Z0-9_]+)`", names)) for word, names in rows}
    assert documented == CPUINFO_TO_CPUID


@pytest.mark.parametrize(
    "flags, level",
    [("", 0), (V1_FLAGS, 1), (V2_FLAGS, 2), (V3_FLAGS, 3), (V4_FLAGS, 4)],
)
def test_x86_64_levels_are_cumulative(flags, level):
    names = cpuid_flags(parse_cpuinfo(cpuinfo(flags)))
    assert x86_64_level(names) == level
    assert {n for n in names if n.startswith("X86_64_V")} == {
        f"X86_64_V{n}" for n in range(1, level + 1)
    }


def test_x86_64_level_needs_syscall_or_sysenter_and_every_name():
    assert x86_64_level(cpuid_flags(parse_cpuinfo(cpuinfo(V4_FLAGS.replace("sep", ""))))) == 4
    no_entry = V4_FLAGS.replace("sep", "").replace("syscall", "")
    assert x86_64_level(cpuid_flags(parse_cpuinfo(cpuinfo(no_entry)))) == 0
    # v3 without xsave has no OSXSAVE, so no FMA3 either: v2 only.
    assert x86_64_level(cpuid_flags(parse_cpuinfo(cpuinfo(V3_FLAGS.replace("xsave", ""))))) == 2
    assert x86_64_level(cpuid_flags(parse_cpuinfo(cpuinfo(V4_FLAGS.replace(" movbe", ""))))) == 2


def test_htt_needs_more_than_one_thread_per_core():
    one_thread = parse_cpuinfo(cpuinfo("ht"))
    assert "HTT" not in cpuid_flags(one_thread)
    two_threads = parse_cpuinfo(cpuinfo("ht").replace("siblings\t: 4", "siblings\t: 8"))
    assert "HTT" in cpuid_flags(two_threads)


def test_vendor_dependent_names():
    intel = cpuid_flags(parse_cpuinfo(cpuinfo("ibrs ibpb stibp sev sme")))
    assert {"IBPB", "STIBP"} <= intel
    assert not {"IBRS", "SEV", "SME"} & intel
    amd = cpuid_flags(parse_cpuinfo(cpuinfo("ibrs sev sev_es", "AuthenticAMD", 25, 1)))
    assert {"IBRS", "SEV", "SEV_ES"} <= amd
    assert "TSA_L1_NO" not in amd  # family 0x19 has no implicit TSA immunity
    zen2 = cpuid_flags(parse_cpuinfo(cpuinfo("sse", "AuthenticAMD", 23, 49)))
    assert {"TSA_L1_NO", "TSA_SQ_NO"} <= zen2


def test_avx_dependent_names_and_avxslow():
    no_avx = cpuid_flags(parse_cpuinfo(cpuinfo("avx2 fma xop bmi2")))
    assert not {"AVX2", "FMA3", "XOP", "BMI2"} & no_avx
    sandy_bridge = cpuid_flags(parse_cpuinfo(cpuinfo("xsave avx", model=42)))
    assert "AVXSLOW" in sandy_bridge
    assert "AVXSLOW" not in cpuid_flags(parse_cpuinfo(cpuinfo("xsave avx", model=60)))


# -- model and hypervisor -------------------------------------------------------


def test_hypervisor_order_and_names():
    assert hypervisor_from_files("xen", "kvm-clock", "QEMU") == "xenhvm"
    assert hypervisor_from_files(None, "tsc kvm-clock", "VMware, Inc.") == "kvm"
    assert hypervisor_from_files(None, "tsc hyperv_clocksource_tsc_page", None) == "msvm"
    assert hypervisor_from_files(None, "tsc", "VMware, Inc.") == "vmware"
    assert hypervisor_from_files(None, "tsc", "Microsoft Corporation") == "msvm"
    assert hypervisor_from_files(None, None, "Dell Inc.") == "unknown"
    assert hypervisor_from_files("weird type!", None, None) == "weird_type_"


def test_cpu_model_on_bare_metal_and_in_a_vm(tmp_path):
    bare = write_tree(tmp_path / "bare", {"proc/cpuinfo": cpuinfo("fpu sse")})
    model = discover(bare).attributes["cpu.model"]
    assert model == {"vendor_id": "Intel", "family": "6", "id": "85", "hypervisor": "none"}
    vm = write_tree(
        tmp_path / "vm",
        {
            "proc/cpuinfo": cpuinfo("fpu hypervisor", "AuthenticAMD", 25, 17),
            "sys/devices/system/clocksource/clocksource0/available_clocksource": "kvm-clock tsc\n",
        },
    )
    model = discover(vm).attributes["cpu.model"]
    assert model == {"vendor_id": "AMD", "family": "25", "id": "17", "hypervisor": "kvm"}
    assert cpu_model(parse_cpuinfo("Features\t: fp\n"), "none") == {}


# -- sysfs feature sets ---------------------------------------------------------


def test_cstate(tmp_path):
    cpu = "sys/devices/system/cpu"
    idle = write_tree(
        tmp_path / "a",
        {
            f"{cpu}/cpuidle/current_driver": "intel_idle\n",
            "sys/module/intel_idle/parameters/max_cstate": "9\n",
        },
    )
    assert discover(idle).attributes["cpu.cstate"] == {"enabled": "true"}
    off = write_tree(
        tmp_path / "b",
        {
            f"{cpu}/cpuidle/current_driver": "intel_idle\n",
            "sys/module/intel_idle/parameters/max_cstate": "0\n",
        },
    )
    assert discover(off).attributes["cpu.cstate"] == {"enabled": "false"}
    acpi = write_tree(tmp_path / "c", {f"{cpu}/cpuidle/current_driver": "acpi_idle\n"})
    assert discover(acpi).attributes["cpu.cstate"] == {}
    no_param = write_tree(tmp_path / "d", {f"{cpu}/cpuidle/current_driver": "intel_idle\n"})
    assert "cpu.cstate" not in discover(no_param).attributes
    assert "cpu.cstate" not in discover(HostFS(str(tmp_path / "empty") + "/")).attributes


def test_pstate(tmp_path):
    pstate = "sys/devices/system/cpu/intel_pstate"
    cpufreq = "sys/devices/system/cpu/cpufreq"
    files = {
        f"{pstate}/status": "active\n",
        f"{pstate}/no_turbo": "0\n",
        f"{cpufreq}/policy0/affected_cpus": "0\n",
        f"{cpufreq}/policy0/scaling_governor": "performance\n",
        f"{cpufreq}/policy1/affected_cpus": "1\n",
        f"{cpufreq}/policy1/scaling_governor": "performance\n",
        f"{cpufreq}/policy2/affected_cpus": "\n",
        f"{cpufreq}/policy2/scaling_governor": "powersave\n",
    }
    host = write_tree(tmp_path / "a", files)
    assert discover(host).attributes["cpu.pstate"] == {
        "status": "active",
        "turbo": "true",
        "scaling_governor": "performance",
    }
    files[f"{cpufreq}/policy1/scaling_governor"] = "powersave\n"
    files[f"{pstate}/no_turbo"] = "1\n"
    host = write_tree(tmp_path / "b", files)
    assert discover(host).attributes["cpu.pstate"] == {"status": "active", "turbo": "false"}
    passive = write_tree(tmp_path / "c", {f"{pstate}/status": "passive\n"})
    assert discover(passive).attributes["cpu.pstate"] == {"status": "passive"}
    off = write_tree(tmp_path / "d", {f"{pstate}/status": "off\n", f"{pstate}/no_turbo": "0"})
    assert discover(off).attributes["cpu.pstate"] == {}


def test_sst_bf(tmp_path):
    assert nominal_base_mhz("Intel(R) Xeon(R) Gold 6252N CPU @ 2.30GHz") == 2300
    assert nominal_base_mhz("AMD EPYC 7742 64-Core Processor") is None
    devices = "sys/bus/cpu/devices"
    files = {
        "proc/cpuinfo": cpuinfo("fpu"),
        f"{devices}/cpu0/cpufreq/base_frequency": "2100000\n",
        f"{devices}/cpu1/cpufreq/base_frequency": "2800000\n",
    }
    assert discover(write_tree(tmp_path / "a", files)).attributes["cpu.sst"] == {
        "bf.enabled": "true"
    }
    files[f"{devices}/cpu1/cpufreq/base_frequency"] = "2300000\n"
    assert discover(write_tree(tmp_path / "b", files)).attributes["cpu.sst"] == {}


def test_security_tdx_sev_sgx(tmp_path):
    files = {
        "proc/cpuinfo": cpuinfo("fpu sgx tdx_guest"),
        "sys/module/kvm_intel/parameters/tdx": "Y\n",
        "sys/module/kvm_amd/parameters/sev": "1\n",
        "sys/module/kvm_amd/parameters/sev_es": "Y\n",
        "sys/module/kvm_amd/parameters/sev_snp": "N\n",
        "sys/fs/cgroup/misc.capacity": "sev 509\nsev_es 10\ntdx 31\n",
        "sys/devices/system/node/node0/x86/sgx_total_bytes": "1073741824\n",
        "sys/devices/system/node/node1/x86/sgx_total_bytes": "1073741824\n",
    }
    security = discover(write_tree(tmp_path / "a", files)).attributes["cpu.security"]
    assert security == {
        "sgx.enabled": "true",
        "sgx.epc": "2147483648",
        "tdx.enabled": "true",
        "tdx.total_keys": "31",
        "tdx.protected": "true",
        "sev.enabled": "true",
        "sev.asids": "509",
        "sev.es.enabled": "true",
        "sev.encrypted_state_ids": "10",
    }
    host = write_tree(tmp_path / "a", {})
    got = labels(host, Features(attributes={"cpu.security": security}))
    assert got == {
        "security.sgx.enabled": "true",
        "security.tdx.enabled": "true",
        "security.tdx.protected": "true",
        "security.sev.enabled": "true",
        "security.sev.es.enabled": "true",
    }


def test_security_needs_exact_values(tmp_path):
    files = {
        "proc/cpuinfo": cpuinfo("fpu"),
        "sys/module/kvm_intel/parameters/tdx": "Y",  # upstream wants "Y\n"
        "sys/module/kvm_amd/parameters/sev": "0\n",
        "sys/fs/cgroup/misc/misc.capacity": "sgx_epc 4096\n",
    }
    assert discover(write_tree(tmp_path, files)).attributes["cpu.security"] == {}


def test_rdt_from_kernel_flags(tmp_path):
    flags = "fpu cqm cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local rdt_a cat_l3 mba"
    files = {"proc/cpuinfo": cpuinfo(flags), "sys/fs/resctrl/info/L3/num_closids": "16\n"}
    assert discover(write_tree(tmp_path, files)).attributes["cpu.rdt"] == {
        "RDTMON": "true",
        "RDTCMT": "true",
        "RDTMBM": "true",
        "RDTL3CA": "true",
        "RDTL3CA_NUM_CLOSID": "15",
        "RDTMBA": "true",
    }


def test_topology(tmp_path):
    devices = "sys/bus/cpu/devices"
    files = {
        f"{devices}/cpu0/topology/thread_siblings_list": "0,2\n",
        f"{devices}/cpu0/topology/physical_package_id": "0\n",
        f"{devices}/cpu1/topology/thread_siblings_list": "1\n",
        f"{devices}/cpu1/topology/physical_package_id": "1\n",
    }
    assert discover(write_tree(tmp_path / "a", files)).attributes["cpu.topology"] == {
        "hardware_multithreading": "true",
        "socket_count": "2",
    }
    files[f"{devices}/cpu0/topology/thread_siblings_list"] = "0\n"
    assert discover(write_tree(tmp_path / "b", files)).attributes["cpu.topology"] == {
        "hardware_multithreading": "false",
        "socket_count": "2",
    }
    # One unreadable CPU empties the set, as upstream.
    (tmp_path / "b" / devices / "cpu2").mkdir()
    assert discover(HostFS(str(tmp_path / "b") + "/")).attributes["cpu.topology"] == {}


# -- labels -------------------------------------------------------------------


def test_default_blacklist_is_upstreams():
    assert len(DEFAULT_ATTRIBUTE_BLACKLIST) == 26
    assert {"SSE4", "SSE42", "AVX10", "TDX_GUEST"} <= set(DEFAULT_ATTRIBUTE_BLACKLIST)
    assert SOURCE.default_config()["cpuid"]["attributeWhitelist"] == []


def test_blacklist_and_whitelist(tmp_path):
    host = write_tree(tmp_path, {})
    features = Features(flags={"cpu.cpuid": {"AVX2", "SSE42", "AESNI", "X86_64_V3"}})
    default = labels(host, features)
    assert default == {
        "cpuid.AVX2": "true",
        "cpuid.AESNI": "true",
        "cpuid.X86_64_V3": "true",
    }
    only = {"cpuid": {"attributeBlacklist": ["AVX2"], "attributeWhitelist": ["SSE42", "NOPE"]}}
    assert labels(host, features, only) == {"cpuid.SSE42": "true"}
    nothing_blocked = {"cpuid": {"attributeBlacklist": [], "attributeWhitelist": []}}
    assert len(labels(host, features, nothing_blocked)) == 4


def test_attribute_labels(tmp_path):
    host = write_tree(tmp_path, {"sys/devices/cpu_atom/cpus": "4-7\n"})
    features = Features(
        attributes={
            "cpu.model": {"vendor_id": "Intel", "family": "6", "id": "143", "hypervisor": "none"},
            "cpu.cstate": {"enabled": "true"},
            "cpu.pstate": {"status": "active", "turbo": "false"},
            "cpu.sst": {"bf.enabled": "true"},
            "cpu.rdt": {"RDTMON": "true"},
            "cpu.topology": {"hardware_multithreading": "true", "socket_count": "2"},
            "cpu.coprocessor": {"nx_gzip": "true"},
        }
    )
    assert labels(host, features) == {
        "model.vendor_id": "Intel",
        "model.family": "6",
        "model.id": "143",
        "model.hypervisor": "none",
        "cstate.enabled": "true",
        "pstate.status": "active",
        "pstate.turbo": "false",
        "power.sst_bf.enabled": "true",
        "hardware_multithreading": "true",
        "coprocessor.nx_gzip": "true",
        "cpu_atom": "true",
    }


def test_config_file_whitelist_reaches_the_labels(tmp_path):
    host = write_tree(tmp_path, {"proc/cpuinfo": cpuinfo(V4_FLAGS)})
    config = build_config({"sources": {"cpu": {"cpuid": {"attributeWhitelist": ["AVX512F"]}}}})
    config.core.label_sources = ["cpu"]
    features = discover_features(host, config, "node", ["cpu"])
    cpuid_labels = {k for k in compute_labels(features, host, config, "node") if "cpuid" in k}
    assert cpuid_labels == {NS + "cpu-cpuid.AVX512F"}


# -- whole source on trees ----------------------------------------------------


def test_procfs_fixture_tree():
    features = discover(HostFS(str(PROCFS) + "/"))
    assert features.flags["cpu.cpuid"] == I7_8650U_CPUID
    assert features.attributes["cpu.model"] == {
        "vendor_id": "Intel",
        "family": "6",
        "id": "142",
        "hypervisor": "none",
    }
    # No intel_pstate, no cpuidle, no sys/bus/cpu in this tree: empty sets, as upstream.
    assert features.attributes["cpu.pstate"] == {}
    assert features.attributes["cpu.cstate"] == {}
    assert features.attributes["cpu.topology"] == {}


def test_empty_tree_costs_only_the_missing_features(tmp_path):
    features = discover(HostFS(str(tmp_path) + "/"))
    assert "cpu.cpuid" not in features.flags
    assert "cpu.model" not in features.attributes
    assert features.attributes["cpu.topology"] == {}
    assert labels(HostFS(str(tmp_path) + "/"), features) == {}


# -- this machine ---------------------------------------------------------------


def this_machine_cpu_labels() -> tuple[Features, dict[str, str]]:
    host = HostFS("/")
    config = build_config({})
    config.core.label_sources = ["cpu"]
    features = discover_features(host, config, "node", ["cpu"])
    return features, compute_labels(features, host, config, "node")


def test_this_machine_labels_agree_with_proc_cpuinfo():
    info = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    features, got = this_machine_cpu_labels()
    if info.arch == "arm64":
        expected = {w.upper() for w in info.flags} & ARM64_HWCAPS
        assert {f"{NS}cpu-cpuid.{n}" for n in expected} <= set(got)
        return
    assert info.arch == "x86", f"unexpected /proc/cpuinfo layout: {sorted(info.flags)[:5]}"
    blacklist = set(DEFAULT_ATTRIBUTE_BLACKLIST)
    vendor_dependent = {"IBRS", "SEV", "SEV_ES", "SEV_SNP", "SME", "SME_COHERENT"}
    checked = 0
    for word in sorted(info.flags):
        for name in CPUINFO_TO_CPUID.get(word, ()):
            if name in blacklist or name in vendor_dependent:
                continue
            assert got.get(f"{NS}cpu-cpuid.{name}") == "true", (word, name)
            checked += 1
    assert checked > 10
    for word, name in (("sse4_2", "SSE42"), ("pclmulqdq", "CLMUL")):
        assert f"{NS}cpu-cpuid.{name}" not in got  # blacklisted by default
        assert (name in features.flags["cpu.cpuid"]) == (word in info.flags)
    v2 = {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"} <= info.flags
    assert (got.get(f"{NS}cpu-cpuid.X86_64_V2") == "true") == v2
    assert got[f"{NS}cpu-model.vendor_id"] == vendor_name(info.vendor)
    assert got[f"{NS}cpu-model.family"] == str(info.family)
    assert got[f"{NS}cpu-model.id"] == str(info.model)
    in_vm = "hypervisor" in info.flags
    assert (got[f"{NS}cpu-model.hypervisor"] != "none") == in_vm


@pytest.mark.parametrize(
    ("flags", "vendor", "family", "status", "want"),
    [
        # A Zen guest (this development machine: EPYC 0x19/0x11 under KVM): the kernel says
        # "Not affected" only when CPUID carries both bits, which upstream v0.19 reports.
        ("fpu sse hypervisor", "AuthenticAMD", 0x19, "Not affected", True),
        ("fpu sse hypervisor", "AuthenticAMD", 0x19, "Vulnerable: Clear CPU buffers", False),
        # Zen 3/4 bare metal: in the kernel's list, so "Not affected" means the bits too.
        ("fpu sse", "AuthenticAMD", 0x19, "Not affected", True),
        # Zen 5 bare metal (a model klauspost does not mark by itself): not in the kernel's
        # list, "Not affected" whatever CPUID says: no answer.
        ("fpu sse", "AuthenticAMD", 0x1A, "Not affected", False),
        ("fpu sse hypervisor", "GenuineIntel", 6, "Not affected", False),
        ("fpu sse hypervisor", "AuthenticAMD", 0x19, None, False),
    ],
)
def test_tsa_no_bits_from_the_kernels_tsa_status(tmp_path, flags, vendor, family, status, want):
    model = 0x50 if family == 0x1A else 0x11
    files = {"proc/cpuinfo": cpuinfo(flags, vendor=vendor, family=family, model=model)}
    if status is not None:
        files["sys/devices/system/cpu/vulnerabilities/tsa"] = status + "\n"
    host = write_tree(tmp_path, files)
    names = discover(host).flags["cpu.cpuid"]
    assert ({"TSA_L1_NO", "TSA_SQ_NO"} <= set(names)) is want
