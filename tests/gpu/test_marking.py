"""compute_gpu_labels: the GPU Operator's gpu.present / gpu.deploy.* rule, table-driven."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfd.gpu.marking import (
    DEPLOY_LABELS,
    DEPLOY_OPERANDS,
    DEPLOY_OPERANDS_LABEL,
    GPU_NODE_LABELS,
    GPU_PRESENT_LABEL,
    compute_gpu_labels,
    deploy_label,
    features_show_nvidia_gpu,
    is_gpu_node,
    is_mig_capable,
)

PCI_VENDOR = "feature.node.kubernetes.io/pci-10de.present"
PCI_3D = "feature.node.kubernetes.io/pci-0302_10de.present"
PCI_VGA = "feature.node.kubernetes.io/pci-0300_10de.present"
PRODUCT = "nvidia.com/gpu.product"
DRIVER = deploy_label("driver")
MIG = deploy_label("mig-manager")

# Every operand but mig-manager (which needs a MIG-capable GPU), all "true".
ALL_BUT_MIG = {deploy_label(op): "true" for op in DEPLOY_OPERANDS if op != "mig-manager"}
ALL = {**ALL_BUT_MIG, MIG: "true"}


def present(value: str) -> dict[str, str]:
    return {GPU_PRESENT_LABEL: value}


CASES: list[tuple[str, Mapping[str, str], set[str], dict[str, str]]] = [
    # id, node labels, owned before, wanted
    ("no GPU, never marked: nothing", {"a/b": "c"}, set(), {}),
    ("vendor-only label marks", {PCI_VENDOR: "true"}, set(), {**present("true"), **ALL_BUT_MIG}),
    ("class 0302 label marks", {PCI_3D: "true"}, set(), {**present("true"), **ALL_BUT_MIG}),
    ("class 0300 label marks", {PCI_VGA: "true"}, set(), {**present("true"), **ALL_BUT_MIG}),
    ("value must be exactly true", {PCI_3D: "True", PCI_VENDOR: "yes"}, set(), {}),
    (
        "class-only or device-id spellings do not mark (as upstream)",
        {
            "feature.node.kubernetes.io/pci-0302.present": "true",
            "feature.node.kubernetes.io/pci-10de_2330.present": "true",
        },
        set(),
        {},
    ),
    (
        "a user's false on a GPU node is flipped to true (as upstream)",
        {PCI_3D: "true", **present("false")},
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "already marked by someone else: NFD takes it over, same value",
        {PCI_3D: "true", **present("true")},
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "GPU gone: true flips to false, deploy labels dropped",
        {**present("true"), **ALL_BUT_MIG},
        {GPU_PRESENT_LABEL, *ALL_BUT_MIG},
        present("false"),
    ),
    (
        "GPU gone, marked true by someone else: still flipped to false",
        present("true"),
        set(),
        present("false"),
    ),
    (
        "GPU gone earlier: our false stays (never deleted)",
        present("false"),
        {GPU_PRESENT_LABEL},
        present("false"),
    ),
    (
        "someone else's false on a GPU-less node: not ours, untouched",
        present("false"),
        set(),
        {},
    ),
    (
        "owned gpu.present deleted by a user on a GPU-less node: stays absent",
        {},
        {GPU_PRESENT_LABEL},
        {},
    ),
    (
        "user's driver=false survives (not owned, not returned)",
        {PCI_3D: "true", DRIVER: "false"},
        set(),
        {**present("true"), **{k: v for k, v in ALL_BUT_MIG.items() if k != DRIVER}},
    ),
    (
        "user overwrote our driver=true with false: kept as false, still owned",
        {PCI_3D: "true", **present("true"), **ALL_BUT_MIG, DRIVER: "false"},
        {GPU_PRESENT_LABEL, *ALL_BUT_MIG},
        {**present("true"), **ALL_BUT_MIG, DRIVER: "false"},
    ),
    (
        "paused-for-driver-upgrade and pre-installed are honoured",
        {
            PCI_3D: "true",
            deploy_label("device-plugin"): "paused-for-driver-upgrade",
            DRIVER: "pre-installed",
        },
        {deploy_label("device-plugin")},
        # device-plugin is ours (kept as it is), driver is driver-manager's (not returned)
        {
            **present("true"),
            **{k: v for k, v in ALL_BUT_MIG.items() if k != DRIVER},
            deploy_label("device-plugin"): "paused-for-driver-upgrade",
        },
    ),
    (
        "empty value counts as absent (driver-manager writes it)",
        {PCI_3D: "true", DRIVER: ""},
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "operands=false: no deploy labels, gpu.present still true",
        {PCI_3D: "true", **ALL_BUT_MIG, DEPLOY_OPERANDS_LABEL: "false"},
        {GPU_PRESENT_LABEL, *ALL_BUT_MIG},
        present("true"),
    ),
    (
        "operands=anything-else is ignored",
        {PCI_3D: "true", DEPLOY_OPERANDS_LABEL: "no"},
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "H100 product: MIG-capable, mig-manager too",
        {PCI_3D: "true", PRODUCT: "NVIDIA-H100-80GB-HBM3"},
        set(),
        {**present("true"), **ALL},
    ),
    (
        "A100 pci.ids-style product: MIG-capable",
        {PCI_3D: "true", PRODUCT: "GA100-A100-SXM4-40GB"},
        set(),
        {**present("true"), **ALL},
    ),
    (
        "GFD's mig.capable=false wins over the product name",
        {PCI_3D: "true", PRODUCT: "NVIDIA-A100-SXM4-40GB", "nvidia.com/mig.capable": "false"},
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "vGPU guest is never MIG-capable",
        {
            PCI_3D: "true",
            PRODUCT: "NVIDIA-A100",
            "nvidia.com/vgpu.host-driver-version": "550.54.16",
        },
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "owned mig-manager dropped when the node is no longer MIG-capable",
        {PCI_3D: "true", PRODUCT: "Tesla-T4", **ALL},
        {GPU_PRESENT_LABEL, *ALL},
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "unrelated nvidia.com labels (GFD's) are never returned",
        {PCI_3D: "true", "nvidia.com/gpu.count": "8", "nvidia.com/mig.config": "all-disabled"},
        set(),
        {**present("true"), **ALL_BUT_MIG},
    ),
    (
        "user deploy label on a GPU-less node: not ours, untouched",
        {DRIVER: "true"},
        set(),
        {},
    ),
]


@pytest.mark.parametrize(
    ("labels", "owned", "wanted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compute_gpu_labels(labels: Mapping[str, str], owned: set[str], wanted: dict) -> None:
    assert compute_gpu_labels(labels, owned) == wanted


def apply_like_master(
    node: dict[str, str], owned: set[str], wanted: dict[str, str]
) -> tuple[dict[str, str], set[str]]:
    """What the master's ownership logic does with the result: remove owned labels no
    longer wanted, write the wanted ones, own exactly those."""
    updated = {k: v for k, v in node.items() if not (k in owned and k not in wanted)}
    updated.update(wanted)
    return updated, set(wanted)


def test_users_false_survives_every_update() -> None:
    """Marked, then the user switches the driver off with --overwrite; many passes later
    (with and without other label churn) it is still false, and the rest stays true."""
    node: dict[str, str] = {PCI_3D: "true"}
    owned: set[str] = set()
    node, owned = apply_like_master(node, owned, compute_gpu_labels(node, owned))
    assert node[DRIVER] == "true" and DRIVER in owned
    node[DRIVER] = "false"  # kubectl label node X nvidia.com/gpu.deploy.driver=false --overwrite
    for i in range(5):
        node["feature.node.kubernetes.io/cpu-model.id"] = str(i)  # other updates
        node, owned = apply_like_master(node, owned, compute_gpu_labels(node, owned))
        assert node[DRIVER] == "false"
        assert node[GPU_PRESENT_LABEL] == "true"
        assert node[deploy_label("device-plugin")] == "true"


def test_gpu_removed_then_back() -> None:
    node: dict[str, str] = {PCI_VGA: "true"}
    owned: set[str] = set()
    node, owned = apply_like_master(node, owned, compute_gpu_labels(node, owned))
    del node[PCI_VGA]  # the worker no longer reports the GPU
    node, owned = apply_like_master(node, owned, compute_gpu_labels(node, owned))
    assert node == {GPU_PRESENT_LABEL: "false"}
    node, owned = apply_like_master(node, owned, compute_gpu_labels(node, owned))
    assert node == {GPU_PRESENT_LABEL: "false"}, "stable: false is kept, not deleted"
    node[PCI_VGA] = "true"
    node, owned = apply_like_master(node, owned, compute_gpu_labels(node, owned))
    assert node == {PCI_VGA: "true", GPU_PRESENT_LABEL: "true", **ALL_BUT_MIG}


def test_result_is_idempotent() -> None:
    """Applying the result and computing again gives the same result (no patch churn)."""
    for _, labels, owned, _ in CASES:
        node, now_owned = apply_like_master(dict(labels), owned, compute_gpu_labels(labels, owned))
        again = compute_gpu_labels(node, now_owned)
        assert apply_like_master(node, now_owned, again)[0] == node


def test_inputs_are_not_modified() -> None:
    labels = {PCI_3D: "true", DRIVER: "false"}
    owned = {DRIVER}
    compute_gpu_labels(labels, owned)
    assert labels == {PCI_3D: "true", DRIVER: "false"} and owned == {DRIVER}


def test_constants_match_the_operator() -> None:
    assert GPU_PRESENT_LABEL == "nvidia.com/gpu.present"
    assert DEPLOY_OPERANDS_LABEL == "nvidia.com/gpu.deploy.operands"
    assert set(GPU_NODE_LABELS) == {PCI_VENDOR, PCI_3D, PCI_VGA}
    assert set(DEPLOY_OPERANDS) == {
        "driver",
        "container-toolkit",
        "device-plugin",
        "dcgm",
        "dcgm-exporter",
        "gpu-feature-discovery",
        "node-status-exporter",
        "operator-validator",
        "mig-manager",
    }
    assert DEPLOY_LABELS[0] == "nvidia.com/gpu.deploy.driver"


def test_helpers() -> None:
    assert is_gpu_node({PCI_VENDOR: "true"}) and not is_gpu_node({PCI_VENDOR: "false"})
    assert is_mig_capable({"nvidia.com/mig.capable": "true", PRODUCT: "Tesla-T4"})
    assert is_mig_capable({PRODUCT: "NVIDIA-A30"})
    assert not is_mig_capable({})


# ------------------------------------------------------------------ properties

_KEYS = [
    PCI_VENDOR,
    PCI_3D,
    PCI_VGA,
    GPU_PRESENT_LABEL,
    DEPLOY_OPERANDS_LABEL,
    PRODUCT,
    "nvidia.com/mig.capable",
    *DEPLOY_LABELS,
]
_VALUES = ["true", "false", "", "paused-for-driver-upgrade", "pre-installed", "NVIDIA-A100"]


@given(
    labels=st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES)),
    owned=st.sets(st.sampled_from([GPU_PRESENT_LABEL, *DEPLOY_LABELS])),
)
def test_properties(labels: dict[str, str], owned: set[str]) -> None:
    wanted = compute_gpu_labels(labels, owned)
    # Only the marking labels, and only valid values.
    assert set(wanted) <= {GPU_PRESENT_LABEL, *DEPLOY_LABELS}
    # Someone else's non-empty value is never overwritten or claimed.
    for key, value in labels.items():
        if key in wanted and key not in owned and value and key != GPU_PRESENT_LABEL:
            raise AssertionError(f"claimed {key}={value!r}")
    # Deploy labels only on a node that ends up gpu.present=true without operands=false.
    if any(key in DEPLOY_LABELS for key in wanted):
        assert wanted[GPU_PRESENT_LABEL] == "true"
        assert labels.get(DEPLOY_OPERANDS_LABEL) != "false"
    # gpu.present is never taken from "true" to absent.
    if labels.get(GPU_PRESENT_LABEL) == "true":
        assert wanted.get(GPU_PRESENT_LABEL) in ("true", "false")
    # Applying the result is a fixed point.
    node, now_owned = apply_like_master(dict(labels), owned, wanted)
    assert compute_gpu_labels(node, now_owned) == wanted


# ------------------------------------------------------------------ raw PCI features decide too

PCI_H100 = {"class": "0302", "vendor": "10de", "device": "2330"}
PCI_4090 = {"class": "0300", "vendor": "10de", "device": "2684"}


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        ({"pci.device": [PCI_H100]}, True),
        ({"pci.device": [PCI_4090]}, True),
        ({"gpu.device": [{"address": "0000:01:00.0", **PCI_4090}]}, True),
        ({"pci.device": [{"class": "0403", "vendor": "10de", "device": "22ba"}]}, False),
        ({"pci.device": [{"class": "0680", "vendor": "10de", "device": "22a3"}]}, False),
        ({"pci.device": [{"class": "0300", "vendor": "1a03", "device": "2000"}]}, False),
        ({"pci.device": [{"class": "0380", "vendor": "10de"}]}, False),
        ({"pci.device": [{"vendor": "10de"}]}, False),  # no class: not a GPU
        ({"usb.device": [PCI_H100]}, False),  # only the PCI feature sets count
        ({}, False),
    ],
)
def test_features_show_nvidia_gpu(instances: dict, expected: bool) -> None:
    assert features_show_nvidia_gpu(instances) is expected


def test_hardware_marks_a_node_whatever_the_label_names() -> None:
    # deviceLabelFields [class, device]: pci-0302_2330.present, none of the operator's three.
    labels = {"feature.node.kubernetes.io/pci-0302_2330.present": "true"}
    assert compute_gpu_labels(labels, set()) == {}
    wanted = compute_gpu_labels(labels, set(), hardware=True)
    assert wanted[GPU_PRESENT_LABEL] == "true"
    assert wanted[deploy_label("driver")] == "true"
    # The operator's labels still decide as before when they are there.
    operator = {"feature.node.kubernetes.io/pci-10de.present": "true"}
    assert compute_gpu_labels(operator, set(), hardware=False)[GPU_PRESENT_LABEL] == "true"
    assert compute_gpu_labels(operator, set(), hardware=True) == compute_gpu_labels(operator, set())
    # GPU gone from both labels and hardware: flipped to "false", as before.
    gone = compute_gpu_labels({GPU_PRESENT_LABEL: "true"}, {GPU_PRESENT_LABEL}, hardware=False)
    assert gone == {GPU_PRESENT_LABEL: "false"}
