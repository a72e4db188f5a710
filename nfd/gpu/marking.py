"""GPU marking: the NVIDIA GPU Operator's node labels, computed from NFD's PCI labels.

The GPU Operator places its driver (and every other operand) on nodes labelled
``nvidia.com/gpu.present=true`` / ``nvidia.com/gpu.deploy.<operand>=true``, and it
derives those from three NFD PCI labels. This module reproduces that rule as a pure
function so that NFD alone gives a cluster correct GPU placement, and so that the
labels stay interchangeable with the operator's own labeller (selectors in other
projects depend on the exact rule).

Rules (docs/gpu.md has the full table; facts from the operator's state manager):

* GPU node: any of the three PCI labels in ``GPU_NODE_LABELS`` is exactly "true", or
  the worker's raw features show an NVIDIA display/3D controller (``pci.device`` or
  ``gpu.device`` instance with vendor 10de and class 0300/0302), whatever label names
  the worker's ``deviceLabelFields`` produce. The operator derives ``gpu.present`` from
  the labels alone, so a worker configured with other fields loses its GPU stack
  (gpu-operator #1469); here the hardware decides as well.
* ``gpu.present``: set "true" on a GPU node; flipped to "false" (never deleted) when
  it was "true" and the GPU labels are gone; otherwise left alone.
* Deploy labels: on a node whose ``gpu.present`` ends up "true" and that has no
  ``gpu.deploy.operands=false``, each operand label is filled with "true" where it is
  absent or "" (``""`` is what k8s-driver-manager writes for a paused operand that
  never ran). A non-empty value someone else wrote (``false``, ``paused-for-*``,
  ``pre-installed``) is not owned by NFD and is left alone. Otherwise NFD wants none.

Ownership is the master's business: the result is the complete set of ``nvidia.com/``
labels NFD wants to own; owned labels missing from it are removed by the master's
usual ownership logic, labels NFD does not own are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nfd.gpu.devices import is_nvidia_gpu

NVIDIA_LABEL_NS = "nvidia.com"

# The operator's ``gpuNodeLabels``: exact keys, exact value "true". With NFD's default
# ``deviceLabelFields`` [class, vendor] a GPU gives one of the class_vendor spellings;
# with [vendor] (the operator's bundled config) it gives ``pci-10de.present``.
GPU_NODE_LABELS = (
    "feature.node.kubernetes.io/pci-10de.present",
    "feature.node.kubernetes.io/pci-0302_10de.present",
    "feature.node.kubernetes.io/pci-0300_10de.present",
)

GPU_PRESENT_LABEL = f"{NVIDIA_LABEL_NS}/gpu.present"
DEPLOY_LABEL_PREFIX = f"{NVIDIA_LABEL_NS}/gpu.deploy."
# ``operands=false`` opts a node out of every operand (operator v1.10+).
DEPLOY_OPERANDS_LABEL = f"{DEPLOY_LABEL_PREFIX}operands"

# Container-workload operands, in the operator's order. mig-manager is only for
# MIG-capable nodes (see ``is_mig_capable``), as in the operator.
DEPLOY_OPERANDS = (
    "driver",
    "gpu-feature-discovery",
    "container-toolkit",
    "device-plugin",
    "dcgm",
    "dcgm-exporter",
    "node-status-exporter",
    "operator-validator",
    "mig-manager",
)
MIG_MANAGER_OPERAND = "mig-manager"

# Inputs of the operator's MIG-capability test: GFD's label if there is one, else a
# product-name heuristic; a vGPU guest is never MIG-capable.
MIG_CAPABLE_LABEL = f"{NVIDIA_LABEL_NS}/mig.capable"
GPU_PRODUCT_LABEL = f"{NVIDIA_LABEL_NS}/gpu.product"
VGPU_HOST_DRIVER_VERSION_LABEL = f"{NVIDIA_LABEL_NS}/vgpu.host-driver-version"
MIG_CAPABLE_PRODUCTS = ("h100", "a100", "a30")


def deploy_label(operand: str) -> str:
    """``nvidia.com/gpu.deploy.<operand>``."""
    return DEPLOY_LABEL_PREFIX + operand


DEPLOY_LABELS = tuple(deploy_label(operand) for operand in DEPLOY_OPERANDS)


# Raw feature sets whose instances are PCI functions with ``vendor`` and ``class``: the
# pci source's (every function) and the gpu source's (NVIDIA GPUs only).
GPU_HARDWARE_FEATURES = ("pci.device", "gpu.device")


def is_gpu_node(node_labels: Mapping[str, str], hardware: bool = False) -> bool:
    """True when NFD reports an NVIDIA GPU: any of ``GPU_NODE_LABELS`` is "true", or
    ``hardware`` (the raw features show one, see ``features_show_nvidia_gpu``)."""
    return hardware or any(node_labels.get(key) == "true" for key in GPU_NODE_LABELS)


def features_show_nvidia_gpu(instances: Mapping[str, Iterable[Mapping[str, str]]]) -> bool:
    """True when an instance of ``GPU_HARDWARE_FEATURES`` is an NVIDIA display or 3D
    controller (vendor 10de, class 0300/0302; not its audio, USB or an NVSwitch).

    ``instances``: feature-set name -> instances' attributes (other sets are ignored).
    """
    for name in GPU_HARDWARE_FEATURES:
        for attrs in instances.get(name, ()):
            if is_nvidia_gpu(attrs.get("vendor"), attrs.get("class")):
                return True
    return False


def is_mig_capable(node_labels: Mapping[str, str]) -> bool:
    """The operator's test for deploying mig-manager on a node."""
    if node_labels.get(VGPU_HOST_DRIVER_VERSION_LABEL):
        return False
    capable = node_labels.get(MIG_CAPABLE_LABEL)
    if capable is not None:
        return capable == "true"
    product = node_labels.get(GPU_PRODUCT_LABEL, "").lower()
    return any(name in product for name in MIG_CAPABLE_PRODUCTS)


def wanted_operands(node_labels: Mapping[str, str]) -> tuple[str, ...]:
    """The operands a GPU node should run, in ``DEPLOY_OPERANDS`` order."""
    mig = is_mig_capable(node_labels)
    return tuple(op for op in DEPLOY_OPERANDS if op != MIG_MANAGER_OPERAND or mig)


def compute_gpu_labels(
    node_labels: Mapping[str, str], owned: set[str], hardware: bool = False
) -> dict[str, str]:
    """Return every ``nvidia.com/`` label NFD wants to own on this node.

    ``node_labels`` are the node's current labels with NFD's newest feature labels
    merged in; ``owned`` are the (fully qualified) label names NFD owned before;
    ``hardware``: the worker's raw features show an NVIDIA GPU.
    """
    wanted: dict[str, str] = {}
    current = node_labels.get(GPU_PRESENT_LABEL)
    if is_gpu_node(node_labels, hardware):
        wanted[GPU_PRESENT_LABEL] = "true"
    elif current == "true":
        # The GPU is gone: flip, never delete (other operators select on the value).
        wanted[GPU_PRESENT_LABEL] = "false"
    elif current is not None and GPU_PRESENT_LABEL in owned:
        # Ours from an earlier pass (normally "false"): keep it, or the master would
        # delete it. A value someone else wrote on a GPU-less node stays theirs.
        wanted[GPU_PRESENT_LABEL] = current
    present = wanted.get(GPU_PRESENT_LABEL, current)

    if present != "true" or node_labels.get(DEPLOY_OPERANDS_LABEL) == "false":
        return wanted
    for operand in wanted_operands(node_labels):
        key = deploy_label(operand)
        value = node_labels.get(key)
        if not value:
            wanted[key] = "true"
        elif key in owned:
            # Ours, possibly paused or switched off since (driver-manager, mig-manager
            # or a user with --overwrite): keep whatever it says now, so the master
            # neither reverts it nor removes it.
            wanted[key] = value
    return wanted
