"""nfd-master end to end: real master and worker processes label real Node objects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import (
    FNK,
    Harness,
    make_harness,
    metric_value,
    metrics_text,
    register,
)
from tests.kube.controlplane import ControlPlane, wait_until


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def features_dir(tmp: Path, name: str, lines: str) -> Path:
    d = tmp / f"features-{name}"
    d.mkdir(exist_ok=True)
    (d / "e2e").write_text(lines)
    return d


def test_two_workers_label_their_own_nodes(harness: Harness, tmp_path: Path) -> None:
    gpu = register(harness, "gpu")
    cpu = register(harness, "cpu")
    master, port = harness.master()
    server = f"127.0.0.1:{port}"
    fd_gpu = features_dir(tmp_path, "gpu", "e2e-a=1\ne2e-gone=true\n")
    fd_cpu = features_dir(tmp_path, "cpu", "e2e-a=2\n")
    harness.worker(gpu, "gpu-datacenter", server, fd_gpu)
    harness.worker(cpu, "cpu-only", server, fd_cpu)

    labels = harness.wait_labels(
        gpu, lambda lb: f"{FNK}/e2e-gone" in lb and f"{FNK}/pci-0302_10de.present" in lb, "labels"
    )
    assert labels[f"{FNK}/e2e-a"] == "1"
    assert labels[f"{FNK}/system-os_release.ID"]
    # The GPU marking stage marks the GPU node for the GPU Operator.
    labels = harness.wait_labels(gpu, lambda lb: "nvidia.com/gpu.present" in lb, "gpu marking")
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels.get("nvidia.com/gpu.deploy.driver") == "true"

    cpu_labels = harness.wait_labels(cpu, lambda lb: f"{FNK}/e2e-a" in lb, "labels")
    assert cpu_labels[f"{FNK}/e2e-a"] == "2"
    assert f"{FNK}/pci-0302_10de.present" not in cpu_labels
    assert "nvidia.com/gpu.present" not in cpu_labels

    # kubectl sees the same, and the ownership annotation lists NFD's labels.
    out = harness.plane.kubectl(
        "get", "nodes", gpu, cpu, "-L", f"{FNK}/e2e-a", "--no-headers", check=True
    ).stdout
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()}
    assert rows == {gpu: "1", cpu: "2"}
    shown = harness.plane.kubectl("get", "node", gpu, "--show-labels", check=True).stdout
    assert f"{FNK}/pci-0302_10de.present=true" in shown
    ann = harness.node(gpu).metadata.annotations
    owned = ann["nfd.node.kubernetes.io/feature-labels"].split(",")
    assert "e2e-a" in owned and "nvidia.com/gpu.present" in owned

    # A feature disappearing removes exactly its label.
    (fd_gpu / "e2e").write_text("e2e-a=1\n")
    labels = harness.wait_labels(gpu, lambda lb: f"{FNK}/e2e-gone" not in lb, "label removal")
    assert labels[f"{FNK}/e2e-a"] == "1"
    assert labels["kubernetes.io/hostname"] == gpu

    text = metrics_text(master)
    assert metric_value(text, "nfd_master_node_update_requests_total") >= 3
    assert metric_value(text, "nfd_master_node_updates_total") >= 3


def test_user_labels_survive_concurrent_updates(harness: Harness, tmp_path: Path) -> None:
    node = register(harness, "conc")
    _, port = harness.master()
    fd = features_dir(tmp_path, "conc", "e2e-v=0\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/e2e-v") == "0", "first labels")

    # While NFD keeps rewriting e2e-v, a user labels the node 30 times with kubectl.
    done = threading.Event()

    def churn() -> None:
        i = 0
        while not done.is_set():
            i += 1
            (fd / "e2e").write_text(f"e2e-v={i}\ne2e-x{i % 3}=true\n")
            done.wait(0.15)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for i in range(30):
            harness.plane.kubectl("label", "node", node, f"user.example.com/l{i}=v{i}", check=True)
    finally:
        done.set()
        t.join()
    (fd / "e2e").write_text("e2e-v=final\n")
    labels = harness.wait_labels(
        node,
        lambda lb: lb.get(f"{FNK}/e2e-v") == "final" and not any("e2e-x" in k for k in lb),
        "final NFD state",
    )
    for i in range(30):
        assert labels[f"user.example.com/l{i}"] == f"v{i}"
    # A user label inside NFD's namespace that NFD does not own also survives.
    harness.plane.kubectl("label", "node", node, f"{FNK}/by-hand=yes", check=True)
    (fd / "e2e").write_text("e2e-v=again\n")
    labels = harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/e2e-v") == "again", "update")
    assert labels[f"{FNK}/by-hand"] == "yes"


def test_master_restart_keeps_labels_and_workers_republish(
    harness: Harness, tmp_path: Path
) -> None:
    node = register(harness, "restart")
    master, port = harness.master()
    fd = features_dir(tmp_path, "restart", "e2e-r=1\ne2e-keep=true\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    harness.wait_labels(node, lambda lb: f"{FNK}/e2e-keep" in lb, "labels")

    # Watch the node: no NFD label may disappear while the master restarts.
    seen_missing: list[dict[str, str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            lb = harness.node_labels(node)
            if f"{FNK}/e2e-keep" not in lb or f"{FNK}/system-os_release.ID" not in lb:
                seen_missing.append(lb)
            stop.wait(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        master.stop()
        (fd / "e2e").write_text("e2e-r=2\ne2e-keep=true\n")  # changes while the master is away
        harness.master(port=port)
        labels = harness.wait_labels(
            node, lambda lb: lb.get(f"{FNK}/e2e-r") == "2", "republished labels", timeout=90
        )
    finally:
        stop.set()
        t.join()
    assert seen_missing == []
    assert labels[f"{FNK}/e2e-keep"] == "true"


def test_no_publish_needs_no_api(harness: Harness, tmp_path: Path) -> None:
    node = "no-api-node"
    proc, port = harness.master("--no-publish", "--kubeconfig=/nonexistent")
    fd = features_dir(tmp_path, "np", "e2e-np=1\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    wait_until(lambda: "would set labels" in proc.text(), 60, "the no-publish log line")
    assert f"'{FNK}/e2e-np': '1'" in proc.text()


def test_prune_removes_what_nfd_owns(harness: Harness, tmp_path: Path) -> None:
    node = register(harness, "prune")
    harness.plane.kubectl("label", "node", node, "user.example.com/mine=1", check=True)
    master, port = harness.master()
    fd = features_dir(tmp_path, "prune", "e2e-p=1\n")
    w = harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    harness.wait_labels(node, lambda lb: f"{FNK}/e2e-p" in lb, "labels")
    w.stop()
    master.stop()
    prune = harness.spawn(
        "prune",
        [str(Path(master.popen.args[0])), f"--kubeconfig={harness.plane.kubeconfig}", "--prune"],
    )
    assert prune.popen.wait(60) == 0, prune.text()
    n = harness.node(node)
    labels = n.metadata.labels
    assert not [k for k in labels if k.startswith(FNK)], labels
    assert labels["user.example.com/mine"] == "1"
    assert labels["kubernetes.io/hostname"] == node
    assert not [k for k in (n.metadata.annotations or {}) if "nfd.node.kubernetes.io" in k]


@pytest.mark.parametrize("flag", ["--label-whitelist=^e2e-ok", "--deny-label-ns=*.example.org"])
def test_policy_flags(harness: Harness, tmp_path: Path, flag: str) -> None:
    node = register(harness, "policy")
    master, port = harness.master(flag)
    fd = features_dir(tmp_path, "pol", "e2e-ok=1\nvendor.example.org/x=1\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    labels = harness.wait_labels(node, lambda lb: f"{FNK}/e2e-ok" in lb, "labels")
    assert "vendor.example.org/x" not in labels
    wait_until(
        lambda: metric_value(metrics_text(master), "nfd_master_node_labels_rejected_total") >= 1,
        10,
        "rejection metric",
    )


def test_no_publish_with_api_logs_the_patch_and_writes_nothing(
    harness: Harness, tmp_path: Path
) -> None:
    node = register(harness, "dry")
    before = harness.node(node).metadata.resource_version
    proc, port = harness.master("--no-publish")  # the harness passes --kubeconfig
    fd = features_dir(tmp_path, "dry", "e2e-dry=1\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    wait_until(lambda: "would send patch" in proc.text(), 60, "the dry-run patch log line")
    line = next(x for x in proc.text().splitlines() if "would send patch" in x)
    assert "feature.node.kubernetes.io~1e2e-dry" in line and '"op": "test"' in line
    n = harness.node(node)
    assert n.metadata.resource_version == before
    assert not [k for k in n.metadata.labels if k.startswith(FNK)]
