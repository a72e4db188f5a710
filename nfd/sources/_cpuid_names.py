"""Name tables for the cpu source: /proc/cpuinfo spellings -> upstream's CPUID names.

Upstream NFD asks the CPU directly (klauspost/cpuid v2) and publishes that
library's ``FeatureID`` names (``AESNI``, ``SSE42``, ``FMA3`` ...). We read the
kernel's view instead, ``proc/cpuinfo`` under the host prefix, so a captured
tree is enough to reproduce a node. The kernel prints most CPUID bits under its
own names (``arch/x86/include/asm/cpufeatures.h``); this table translates them.

Rules of the table:

* Keys are cpuinfo ``flags`` words, values the klauspost names they stand for.
  One cpuinfo word may stand for several names (``abm`` sets both LZCNT and
  POPCNT in klauspost; ``sse`` also sets FXSROPT, which klauspost reads from
  the same CPUID bit).
* Some names depend on more than one word or on the vendor; those are derived
  in ``nfd.sources.cpu.cpuid_flags`` (HTT, OSXSAVE, AVXSLOW, TSA_*_NO, IBRS,
  the SEV family) and listed in ``DERIVED_NAMES``.
* klauspost names with no cpuinfo counterpart at all (the kernel hides the bit,
  or it is a value rather than a bit) are listed in ``NOT_VISIBLE`` so the gap
  is explicit. docs/sources-cpu-kernel-memory.md renders these tables.
"""

from __future__ import annotations

# cpuinfo flag -> klauspost/cpuid v2 FeatureID names (x86).
CPUINFO_TO_CPUID: dict[str, tuple[str, ...]] = {
    "3dnow": ("AMD3DNOW",),
    "3dnowext": ("AMD3DNOWEXT",),
    "abm": ("LZCNT", "POPCNT"),
    "adx": ("ADX",),
    "aes": ("AESNI",),
    "amd_ppin": ("PPIN",),
    "amd_stibp_always_on": ("STIBP_ALWAYSON",),
    "amx_bf16": ("AMXBF16",),
    "amx_complex": ("AMXCOMPLEX",),
    "amx_fp16": ("AMXFP16",),
    "amx_fp8": ("AMXFP8",),
    "amx_int8": ("AMXINT8",),
    "amx_tf32": ("AMXTF32",),
    "amx_tile": ("AMXTILE",),
    "amx_transpose": ("AMXTRANSPOSE",),
    "apx": ("APX_F",),
    "arch_capabilities": ("IA32_ARCH_CAP",),
    "avx": ("AVX",),
    "avx10": ("AVX10",),
    "avx2": ("AVX2",),
    "avx512_bf16": ("AVX512BF16",),
    "avx512_bitalg": ("AVX512BITALG",),
    "avx512_fp16": ("AVX512FP16",),
    "avx512_vbmi2": ("AVX512VBMI2",),
    "avx512_vnni": ("AVX512VNNI",),
    "avx512_vp2intersect": ("AVX512VP2INTERSECT",),
    "avx512_vpopcntdq": ("AVX512VPOPCNTDQ",),
    "avx512bw": ("AVX512BW",),
    "avx512cd": ("AVX512CD",),
    "avx512dq": ("AVX512DQ",),
    "avx512er": ("AVX512ER",),
    "avx512f": ("AVX512F",),
    "avx512ifma": ("AVX512IFMA",),
    "avx512pf": ("AVX512PF",),
    "avx512vbmi": ("AVX512VBMI",),
    "avx512vl": ("AVX512VL",),
    "avx_ifma": ("AVXIFMA",),
    "avx_ne_convert": ("AVXNECONVERT",),
    "avx_vnni": ("AVXVNNI",),
    "avx_vnni_int16": ("AVXVNNIINT16",),
    "avx_vnni_int8": ("AVXVNNIINT8",),
    "bhi_ctrl": ("BHI_CTRL",),
    "bmi1": ("BMI1",),
    "bmi2": ("BMI2",),
    "cldemote": ("CLDEMOTE",),
    "clzero": ("CLZERO",),
    "cmov": ("CMOV",),
    "cmpccxadd": ("CMPCCXADD",),
    "core_capabilities": ("IA32_CORE_CAP",),
    "cpb": ("CPBOOST",),
    "cppc": ("CPPC",),
    "cx16": ("CX16",),
    "cx8": ("CMPXCHG8",),
    "debug_swap": ("SEV_DEBUGSWAP",),
    "decodeassists": ("SVMDA",),
    "enqcmd": ("ENQCMD",),
    "erms": ("ERMS",),
    "f16c": ("F16C",),
    "flush_l1d": ("FLUSH_L1D",),
    "flushbyasid": ("SVMFBASID",),
    "fma": ("FMA3",),
    "fma4": ("FMA4",),
    "fpu": ("X87",),
    "fsrc": ("CMPSB_SCADBS_SHORT",),
    "fsrm": ("FSRM",),
    "fsrs": ("STOSB_SHORT",),
    "fxsr": ("FXSR",),
    "fxsr_opt": ("FXSROPT",),
    "fzrm": ("MOVSB_ZL",),
    "gfni": ("GFNI",),
    "hle": ("HLE",),
    "hreset": ("HRESET",),
    "hybrid_cpu": ("HYBRID_CPU",),
    "hypervisor": ("HYPERVISOR",),
    "ibpb": ("IBPB",),
    "ibpb_brtype": ("IBPB_BRTYPE",),
    "ibrs": ("IBRS",),
    "ibs": ("IBS",),
    "ibt": ("CETIBT",),
    "invlpgb": ("INVLPGB",),
    "irperf": ("MSRIRC",),
    "lahf_lm": ("LAHF",),
    "lam": ("LAM",),
    "lbrv": ("LBRVIRT",),
    "mcommit": ("MCOMMIT",),
    "md_clear": ("MD_CLEAR",),
    "mmx": ("MMX",),
    "mmxext": ("MMXEXT",),
    "movbe": ("MOVBE",),
    "movdir64b": ("MOVDIR64B",),
    "movdiri": ("MOVDIRI",),
    "mpx": ("MPX",),
    "msrlist": ("MSRLIST",),
    "npt": ("SVMNP",),
    "nrip_save": ("NRIPS",),
    "nx": ("NX",),
    "overflow_recov": ("MCAOVERFLOW",),
    "pausefilter": ("SVMPF",),
    "pclmulqdq": ("CLMUL",),
    "pconfig": ("PCONFIG",),
    "pfthreshold": ("SVMPFT",),
    "pni": ("SSE3",),
    "popcnt": ("POPCNT",),
    "prefetchi": ("PREFETCHI",),
    "psfd": ("PSFD",),
    "rdpru": ("RDPRU",),
    "rdrand": ("RDRAND",),
    "rdseed": ("RDSEED",),
    "rdtscp": ("RDTSCP",),
    "rrsba_ctrl": ("RRSBA_CTRL",),
    "rtm": ("RTM",),
    "rtm_always_abort": ("RTM_ALWAYS_ABORT",),
    "sbpb": ("SBPB",),
    "sep": ("SYSEE",),
    "serialize": ("SERIALIZE",),
    "sev": ("SEV",),
    "sev_es": ("SEV_ES",),
    "sev_snp": ("SEV_SNP",),
    "sgx": ("SGX",),
    "sgx_lc": ("SGXLC",),
    "sha_ni": ("SHA",),
    "shstk": ("CETSS",),
    "sm3": ("SM3_X86",),
    "sm4": ("SM4_X86",),
    "sme": ("SME",),
    "sme_coherent": ("SME_COHERENT",),
    "srbds_ctrl": ("SRBDS_CTRL",),
    "srso_bp_spec_reduce": ("SRSO_MSR_FIX",),
    "srso_no": ("SRSO_NO",),
    "srso_user_kernel_no": ("SRSO_USER_KERNEL_NO",),
    "ssbd": ("SPEC_CTRL_SSBD",),
    # klauspost sets FXSROPT from the same CPUID.1:EDX bit 25 as SSE.
    "sse": ("SSE", "FXSROPT"),
    "sse2": ("SSE2",),
    "sse4_1": ("SSE4",),
    "sse4_2": ("SSE42",),
    "sse4a": ("SSE4A",),
    "ssse3": ("SSSE3",),
    "stibp": ("STIBP",),
    "succor": ("SUCCOR",),
    "svm": ("SVM",),
    "svm_lock": ("SVML",),
    "syscall": ("SYSCALL",),
    "tbm": ("TBM",),
    "tdx_guest": ("TDX_GUEST",),
    "tme": ("TME",),
    "topoext": ("TOPEXT",),
    "tsa_l1_no": ("TSA_L1_NO",),
    "tsa_sq_no": ("TSA_SQ_NO",),
    "tsc_scale": ("TSCRATEMSR",),
    "tsxldtrk": ("TSXLDTRK",),
    "user_shstk": ("CETSS",),
    "vaes": ("VAES",),
    "verw_clear": ("TSA_VERW_CLEAR",),
    "vm_page_flush": ("MSR_PAGEFLUSH",),
    "vmcb_clean": ("VMCBCLEAN",),
    "vmx": ("VMX",),
    "vpclmulqdq": ("VPCLMULQDQ",),
    "waitpkg": ("WAITPKG",),
    "wbnoinvd": ("WBNOINVD",),
    "wrmsrns": ("WRMSRNS",),
    "xgetbv1": ("XGETBV1",),
    "xop": ("XOP",),
    "xsave": ("XSAVE",),
    "xsavec": ("XSAVEC",),
    "xsaveopt": ("XSAVEOPT",),
    "xsaves": ("XSAVES",),
}

# Names computed from several cpuinfo fields (see nfd.sources.cpu.cpuid_flags).
DERIVED_NAMES: dict[str, str] = {
    "HTT": "'ht' and more than one thread per core ('siblings' > 'cpu cores'), "
    "as klauspost only sets HTT when threads per core > 1",
    "OSXSAVE": "'xsave': Linux enables XSAVE in CR4 whenever it keeps the flag",
    "AVXSLOW": "AVX on Intel family 6 model < 60, or AMD family < 23 (or 23 with model < 49)",
    "TSA_L1_NO": "also set for AMD family < 0x19, and family 0x1a models 0x00-0x4f, 0x60-0x7f",
    "TSA_SQ_NO": "as TSA_L1_NO",
    "IBRS": "'ibrs' on non-Intel CPUs only (klauspost reads AMD's 0x80000008 bit)",
    "SEV": "'sev' on AMD only (klauspost reads 0x8000001f on AMD only); "
    "likewise SEV_ES, SEV_SNP, SME, SME_COHERENT, SEV_DEBUGSWAP, MSR_PAGEFLUSH",
}

# klauspost names the kernel never shows in cpuinfo.
NOT_VISIBLE: tuple[str, ...] = (
    "AVX10_128",
    "AVX10_256",
    "AVX10_512",
    "AVX512BMM",
    "EFER_LMSLE_UNS",
    "FP128",
    "FP256",
    "HWA",
    "IBRS_PREFERRED",
    "IBRS_PROVIDES_SMP",
    "IBSBRNTRGT",
    "IBSFETCHSAM",
    "IBSFFV",
    "IBSOPCNT",
    "IBSOPCNTEXT",
    "IBSOPSAM",
    "IBSRDWROPCNT",
    "IBSRIPINVALIDCHK",
    "IBS_FETCH_CTLX",
    "IBS_OPDATA4",
    "IBS_OPFUSE",
    "IBS_PREVENTHOST",
    "IBS_ZEN4",
    "IDPRED_CTRL",
    "INT_WBINVD",
    "KEYLOCKER",
    "KEYLOCKERW",
    "MCDT_NO",
    "MOVU",
    "PMU_FIXEDCOUNTER_CYCLES",
    "PMU_FIXEDCOUNTER_INSTRUCTIONS",
    "PMU_FIXEDCOUNTER_REFCYCLES",
    "PMU_FIXEDCOUNTER_TOPDOWN_SLOTS",
    "SEV_64BIT",
    "SEV_ALTERNATIVE",
    "SEV_RESTRICTED",
    "SGXPQC",
    "TLB_FLUSH_NESTED",
    "VMPL",
    "VMSA_REGPROT",
    "VTE",
)

# klauspost names published only for AMD (they come from AMD-only CPUID leaves).
AMD_ONLY: frozenset[str] = frozenset(
    {
        "MSR_PAGEFLUSH",
        "SEV",
        "SEV_DEBUGSWAP",
        "SEV_ES",
        "SEV_SNP",
        "SME",
        "SME_COHERENT",
        "SRSO_MSR_FIX",
        "SRSO_NO",
        "SRSO_USER_KERNEL_NO",
        "IBPB_BRTYPE",
        "SBPB",
        "TSA_VERW_CLEAR",
    }
)

# x86-64 psABI micro-architecture levels, cumulative, as klauspost's X64Level.
# A level also needs SYSCALL or SYSEE (klauspost's "oneOfLevel").
X86_64_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"CMOV", "CMPXCHG8", "X87", "FXSR", "MMX", "SSE", "SSE2"}),
    frozenset({"CX16", "LAHF", "POPCNT", "SSE3", "SSE4", "SSE42", "SSSE3"}),
    frozenset({"AVX", "AVX2", "BMI1", "BMI2", "F16C", "FMA3", "LZCNT", "MOVBE", "OSXSAVE"}),
    frozenset({"AVX512F", "AVX512BW", "AVX512CD", "AVX512DQ", "AVX512VL"}),
)

# cpuinfo vendor_id (CPUID leaf 0 string) -> klauspost Vendor name.
VENDOR_NAMES: dict[str, str] = {
    "AMDisbetter!": "AMD",
    "AuthenticAMD": "AMD",
    "CentaurHauls": "VIA",
    "GenuineIntel": "Intel",
    "TransmetaCPU": "Transmeta",
    "GenuineTMx86": "Transmeta",
    "Geode by NSC": "NSC",
    "VIA VIA VIA": "VIA",
    "HygonGenuine": "Hygon",
    "Vortex86 SoC": "SiS",
    "SiS SiS SiS": "SiS",
    "RiseRiseRise": "SiS",
    "Genuine  RDC": "RDC",
}
UNKNOWN_VENDOR = "VendorUnknown"

# arm64 hwcap names NFD publishes; the kernel prints them lower-cased in the
# cpuinfo "Features" line.
ARM64_HWCAPS: frozenset[str] = frozenset(
    "FP ASIMD EVTSTRM AES PMULL SHA1 SHA2 CRC32 ATOMICS FPHP ASIMDHP CPUID ASIMDRDM "
    "JSCVT FCMA LRCPC DCPOP SHA3 SM3 SM4 ASIMDDP SHA512 SVE ASIMDFHM DIT USCAT ILRCPC "
    "FLAGM SSBS SB PACA PACG DCPODP SVE2 SVEAES SVEPMULL SVEBITPERM SVESHA3 SVESM4 "
    "FLAGM2 FRINT SVEI8MM SVEF32MM SVEF64MM SVEBF16 I8MM BF16 DGH RNG BTI MTE ECV AFP "
    "RPRES MTE3 SME SMEI16I64 SMEF64F64 SMEI8I32 SMEF16F32 SMEB16F32 SMEF32F32 SMEFA64 "
    "WFXT EBF16 SVEEBF16".split()
)
