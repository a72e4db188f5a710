"""nfd-master end to end: leader election between two replicas, and GPU marking only."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import FNK, Harness, _ready, make_harness, register
from tests.kube.controlplane import ControlPlane, wait_until

LEASE = ("--enable-leader-election", "--namespace=default")
FAST = (
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=0.5s",
)


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def _features(tmp: Path, name: str, text: str) -> Path:
    d = tmp / name
    d.mkdir(exist_ok=True)
    (d / "e2e").write_text(text)
    return d


def _holder(plane: ControlPlane) -> str:
    from kubernetes import client

    lease = client.CoordinationV1Api(plane.api_client).read_namespaced_lease(
        "nfd-master.nfd.kubernetes.io", "default"
    )
    return lease.spec.holder_identity or ""


def test_only_the_leader_writes_and_a_standby_takes_over(harness: Harness, tmp_path: Path) -> None:
    plane = harness.plane
    plane.kubectl("delete", "lease", "-n", "default", "nfd-master.nfd.kubernetes.io")
    node_a = register(harness, "ha-a")
    node_b = register(harness, "ha-b")
    leader, port_a = harness.master(*LEASE, *FAST)
    wait_until(lambda: _holder(plane) != "", 30, "the lease to be taken")
    first = _holder(plane)
    # A standby is never ready (a Service routes to the leader only) and sends workers
    # away with UNAVAILABLE, so nothing it holds goes unwritten.
    standby, port_b = harness.master(*LEASE, *FAST, wait=False)
    wait_until(lambda: "serving gRPC" in standby.text(), 60, "the standby to start")
    assert not _ready(standby.metrics_port, standby)  # type: ignore[attr-defined]

    harness.worker(node_b, "cpu-only", f"127.0.0.1:{port_b}", _features(tmp_path, "b", "e2e=b\n"))
    harness.worker(node_a, "cpu-only", f"127.0.0.1:{port_a}", _features(tmp_path, "a", "e2e=a\n"))
    harness.wait_labels(node_a, lambda lb: lb.get(f"{FNK}/e2e") == "a", "leader's labels")
    import time

    time.sleep(3)
    assert f"{FNK}/e2e" not in harness.node_labels(node_b)
    assert _holder(plane) == first

    # The leader dies without releasing the lease: the standby takes over and writes.
    leader.stop(signal.SIGKILL)
    harness.wait_labels(node_b, lambda lb: lb.get(f"{FNK}/e2e") == "b", "standby's labels", 60)
    assert _holder(plane) not in ("", first)
    assert "became leader" in standby.text()


def test_gpu_marking_only(harness: Harness) -> None:
    plane = harness.plane
    gpu = register(harness, "gpumark")
    cpu = register(harness, "cpumark")
    # Labels as another NFD would have set them.
    plane.kubectl("label", "node", gpu, f"{FNK}/pci-10de.present=true", check=True)
    plane.kubectl("annotate", "node", gpu, "nfd.node.kubernetes.io/feature-labels=pci-10de.present")
    proc = harness.spawn(
        "gpu-only",
        [
            str(Path(__import__("sys").executable).parent / "nfd-master"),
            f"--kubeconfig={plane.kubeconfig}",
            "--gpu-marking-only",
            "--metrics=0",
        ],
    )
    labels = harness.wait_labels(gpu, lambda lb: "nvidia.com/gpu.present" in lb, "marking")
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["nvidia.com/gpu.deploy.driver"] == "true"
    ann = harness.node(gpu).metadata.annotations
    # Tracked apart from the other NFD's annotation, which stays untouched.
    assert ann["nfd.node.kubernetes.io/feature-labels"] == "pci-10de.present"
    assert "nvidia.com/gpu.present" in ann["gpu-marking.nfd.node.kubernetes.io/feature-labels"]
    # A user's "false" survives.
    plane.kubectl(
        "label", "node", gpu, "nvidia.com/gpu.deploy.device-plugin=false", "--overwrite", check=True
    )
    plane.kubectl("label", "node", gpu, "e2e.example.com/poke=1", check=True)  # node event
    wait_until(lambda: "e2e.example.com/poke" in harness.node_labels(gpu), 10, "the poke label")
    import time

    time.sleep(2)
    assert harness.node_labels(gpu)["nvidia.com/gpu.deploy.device-plugin"] == "false"
    # The GPU goes away: present flips to false and the deploy labels go.
    plane.kubectl("label", "node", gpu, f"{FNK}/pci-10de.present-", check=True)
    labels = harness.wait_labels(
        gpu, lambda lb: lb.get("nvidia.com/gpu.present") == "false", "gpu.present=false"
    )
    assert "nvidia.com/gpu.deploy.driver" not in labels
    assert "nvidia.com/gpu.present" not in harness.node_labels(cpu)
    assert proc.alive()
