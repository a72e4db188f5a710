"""``nfd docs labels``: the label reference (docs/labels.md), generated from the code.

Everything in the reference comes from the modules themselves, so it cannot drift:

* the source list, which sources ``all`` enables, priorities and prefixing come from
  ``nfd.sources`` (``SOURCE_NAMES`` and each module's ``SOURCE``);
* each source's summary is the first sentence of its module docstring;
* each source's label keys come from a module-level ``LABELS`` table, a sequence of
  ``(key, meaning)`` pairs with keys as ``labels()`` returns them (the worker adds
  ``feature.node.kubernetes.io/<source>-`` to built-in keys without a ``/``); a source
  module without one falls back to ``DEFAULT_LABELS`` below, upstream's inventory;
* each source's default configuration is ``SOURCE.default_config()``;
* the GPU marking labels come from ``nfd.gpu.marking``.

A test checks docs/labels.md equals this output: after changing any of the above, run
``nfd docs labels --output docs/labels.md``.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from nfd.gpu import marking
from nfd.sources import SOURCE_NAMES, get_source

DEFAULT_NS = "feature.node.kubernetes.io"
REGENERATE = "nfd docs labels --output docs/labels.md"

# Upstream's label inventory (reference §2.12) for source modules that do not define
# ``LABELS`` yet. Keys as the source returns them.
DEFAULT_LABELS: dict[str, tuple[tuple[str, str], ...]] = {
    "cpu": (
        ("cpuid.<FLAG>", "`true` for each CPUID flag, minus `cpuid.attributeBlacklist`"),
        ("cpuid.AVX10_VERSION", "AVX10 version"),
        ("model.vendor_id", "CPU vendor (e.g. `Intel`, `AMD`)"),
        ("model.family", "CPU family"),
        ("model.id", "CPU model number"),
        ("model.hypervisor", "hypervisor type, `none` on bare metal"),
        ("cstate.enabled", "C-states enabled"),
        ("pstate.status", "intel_pstate / amd_pstate status"),
        ("pstate.turbo", "turbo boost enabled"),
        ("pstate.scaling_governor", "cpufreq scaling governor"),
        ("security.sgx.enabled", "Intel SGX enabled"),
        ("security.se.enabled", "IBM Secure Execution enabled (s390x)"),
        ("security.tdx.enabled", "Intel TDX enabled on the host"),
        ("security.tdx.protected", "running inside a TDX guest"),
        ("security.sev.enabled", "AMD SEV enabled"),
        ("security.sev.es.enabled", "AMD SEV-ES enabled"),
        ("security.sev.snp.enabled", "AMD SEV-SNP enabled"),
        ("power.sst_bf.enabled", "Intel SST-BF enabled"),
        ("hardware_multithreading", "SMT / hyper-threading enabled"),
        ("coprocessor.nx_gzip", "NX gzip co-processor (POWER)"),
        ("cpu_atom", "hybrid CPU with Atom (E) cores"),
        ("cpu_core", "hybrid CPU with Core (P) cores"),
    ),
    "custom": (
        ("rdma.capable", "a Mellanox/NVIDIA networking PCI device (vendor 15b3) is present"),
        ("rdma.available", "kernel modules ib_uverbs and rdma_ucm are loaded"),
        ("<rule label>", "labels of `sources.custom` rules and `custom.d` rule files"),
    ),
    "fake": (
        ("fakefeature1", "`true` (test source, only when selected explicitly)"),
        ("fakefeature2", "`true`"),
        ("fakefeature3", "`true`"),
    ),
    "gpu": (
        ("nvidia.com/gpu.count", "number of NVIDIA GPUs (SR-IOV virtual functions excluded)"),
        ("nvidia.com/gpu.mode", "`compute` (3D controller), `graphics` (VGA) or `unknown`"),
        ("nvidia.com/gpu.product", "GPU product name (driver, else pci.ids)"),
        ("nvidia.com/gpu.family", "architecture (GFD's names), from the device-id table"),
        ("nvidia.com/gpu.compute.major", "CUDA compute capability, major, from the table"),
        ("nvidia.com/gpu.compute.minor", "CUDA compute capability, minor, from the table"),
        ("nvidia.com/gpu.memory", "NVML total memory in MiB, for the few ids that fix it"),
        ("nvidia.com/mig.capable", "`true` if any GPU is MIG-capable, `false` if none is"),
        ("nvidia.com/gpu.machine", "DMI product name of the machine"),
        ("nvidia.com/cuda.driver.major", "NVIDIA driver version, major part"),
        ("nvidia.com/cuda.driver.minor", "NVIDIA driver version, minor part"),
        ("nvidia.com/cuda.driver.rev", "NVIDIA driver version, revision"),
    ),
    "iommu": (("enabled", "an IOMMU is active (upstream v0.6-v0.11)"),),
    "kernel": (
        ("config.<OPTION>", "kernel config options listed in `configOpts`"),
        ("selinux.enabled", "SELinux enabled"),
        ("version.full", "full kernel version"),
        ("version.major", "kernel major version"),
        ("version.minor", "kernel minor version"),
        ("version.revision", "kernel revision"),
    ),
    "local": (("<key>", "whatever feature files in features.d and hook scripts say"),),
    "memory": (
        ("numa", "more than one NUMA node"),
        ("swap", "swap is enabled"),
        ("nv.present", "NVDIMM devices present"),
        ("nv.dax", "NVDIMM regions in DAX mode"),
    ),
    "network": (
        ("sriov.capable", "a network device can do SR-IOV"),
        ("sriov.configured", "SR-IOV virtual functions are configured"),
    ),
    "pci": (
        ("<devlabel>.present", "a device of a whitelisted class; devlabel = `deviceLabelFields`"),
        ("<devlabel>.sriov.capable", "such a device can do SR-IOV"),
    ),
    "storage": (("nonrotationaldisk", "a non-rotational (SSD/NVMe) block device"),),
    "system": (
        ("os_release.ID", "os-release ID"),
        ("os_release.VERSION_ID", "os-release VERSION_ID"),
        ("os_release.VERSION_ID.major", "first component of VERSION_ID"),
        ("os_release.VERSION_ID.minor", "second component of VERSION_ID"),
    ),
    "usb": (
        ("<devlabel>.present", "a device of a whitelisted class; devlabel = `deviceLabelFields`"),
    ),
}


def full_key(source: str, key: str, prefixed: bool) -> str:
    """The label key as it lands on the node (the worker's prefixing rule)."""
    if "/" in key or not prefixed:
        return key
    return f"{DEFAULT_NS}/{source}-{key}"


def summary(module: Any) -> str:
    """The first sentence of a module docstring, on one line."""
    doc = inspect.getdoc(module) or ""
    paragraph = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    text = match.group(1) if match else paragraph
    return text.replace("``", "`")  # reST literals to Markdown


def source_labels(name: str, module: Any) -> list[tuple[str, str]]:
    table = getattr(module, "LABELS", None)
    if table is None:
        table = DEFAULT_LABELS.get(name, ())
    rows = []
    for entry in table:
        key, meaning = entry
        rows.append((str(key), str(meaning)))
    return rows


class _ConfigDumper(yaml.SafeDumper):
    """Block mappings, but lists of plain values on one line, as people write configs."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(not isinstance(item, dict | list) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_ConfigDumper.add_representer(list, _represent_list)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _gpu_marking_section() -> list[str]:
    present = marking.GPU_PRESENT_LABEL
    deploy = marking.DEPLOY_LABELS
    node_labels = marking.GPU_NODE_LABELS
    opt_out = marking.DEPLOY_OPERANDS_LABEL
    lines = [
        "## GPU marking (nfd-master `--enable-gpu-marking`)",
        "",
        "Written by the master, not by workers, the way the NVIDIA GPU Operator writes them. "
        "A node is a GPU node when its worker's raw `pci.device` (or `gpu.device`) features "
        "show an NVIDIA display or 3D controller (vendor `10de`, class `0300`/`0302`), "
        "whatever its `deviceLabelFields`, or when any of these labels is `true`: "
        + ", ".join(f"`{k}`" for k in node_labels)
        + ".",
        "",
        "| Label | Value |",
        "|---|---|",
        f"| `{present}` | `true` on GPU nodes; flipped to `false` (never deleted) when the GPU "
        "goes away |",
    ]
    mig = getattr(marking, "MIG_MANAGER_OPERAND", None)
    for key in deploy:
        where = "MIG-capable GPU nodes" if mig and key.endswith("." + mig) else "GPU nodes"
        lines.append(
            f"| `{key}` | `true` on {where} where absent or empty; other values are kept |"
        )
    if opt_out:
        lines.append(f"| `{opt_out}` | set by users: `false` removes every deploy label |")
    lines.append("")
    return lines


def render_labels() -> str:
    """The whole docs/labels.md text."""
    out = [
        "# Label reference",
        "",
        f"<!-- Generated by `{REGENERATE}` from the source modules; do not edit. -->",
        "",
        "Built-in labels are named `feature.node.kubernetes.io/<source>-<key>`. Keys that "
        "already contain a `/` are kept as they are; labels from the `local` and `custom` "
        "sources are kept as written and the master adds `feature.node.kubernetes.io/` to "
        "names without a namespace. When two sources set the same label, the one with the "
        "higher priority wins (built-ins, then custom, then local).",
        "",
        "| Source | In `all` | Priority | Prefix |",
        "|---|---|---|---|",
    ]
    sources = [(name, get_source(name)) for name in SOURCE_NAMES]
    for name, source in sources:
        prefix = f"`{DEFAULT_NS}/{name}-`" if source.prefix_labels else "as written"
        in_all = "yes" if source.enabled_by_default else "no"
        out.append(f"| [{name}](#{name}) | {in_all} | {source.priority} | {prefix} |")
    out.append("")
    for name, source in sources:
        module = sys.modules[type(source).__module__]
        out += [f"## {name}", ""]
        text = summary(module)
        if text:
            out += [text, ""]
        rows = source_labels(name, module)
        if rows:
            out += ["| Label | Meaning |", "|---|---|"]
            for key, meaning in rows:
                shown = full_key(name, key, source.prefix_labels)
                out.append(f"| `{_cell(shown)}` | {_cell(meaning)} |")
            out.append("")
        config = source.default_config()
        if config:
            dumped = yaml.dump(
                {"sources": {name: config}}, Dumper=_ConfigDumper, sort_keys=False, width=88
            )
            out += ["Default configuration (nfd-worker.conf):", "", "```yaml", dumped.rstrip()]
            out += ["```", ""]
    out += _gpu_marking_section()
    return "\n".join(out).rstrip() + "\n"


RENDERERS = {"labels": render_labels}


def run(args: argparse.Namespace) -> int:
    text = RENDERERS[args.what]()
    if args.check:
        try:
            current = Path(args.check).read_text(encoding="utf-8")
        except OSError as err:
            print(f"{args.check}: {err.strerror}", file=sys.stderr)
            return 1
        if current != text:
            print(f"{args.check} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("docs", help="generate reference documentation from the code")
    parser.add_argument("what", choices=sorted(RENDERERS), help="which reference")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--output", "-o", help="write to this file instead of stdout")
    target.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the output")
    parser.set_defaults(func=run)
