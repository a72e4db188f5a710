"""GPU driver placement on a real control plane: real nfd-master (GPU marking on), real
nfd-worker processes discovering the GPU fixture trees, the example driver DaemonSets from
deploy/overlays/gpu, and kube-controller-manager's DaemonSet controller deciding where driver
pods go.

Each test registers its own nodes (unique names) and applies the DaemonSets in its own
namespace; since a DaemonSet sees every node in the cluster, assertions look only at the
test's own nodes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.controlplane import ControlPlane, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
GPU_OVERLAY = REPO / "deploy" / "overlays" / "gpu"
BIN = Path(sys.executable).parent
NFD_MASTER = BIN / "nfd-master"
NFD_WORKER = BIN / "nfd-worker"

DRIVER_DS = "nvidia-driver-daemonset"
PRESENT_DS = "nvidia-driver-daemonset-gpu-present"
PRESENT = "nvidia.com/gpu.present"
DEPLOY_DRIVER = "nvidia.com/gpu.deploy.driver"
DEPLOY_PLUGIN = "nvidia.com/gpu.deploy.device-plugin"
PCI_3D = "feature.node.kubernetes.io/pci-0302_10de.present"
PCI_VGA = "feature.node.kubernetes.io/pci-0300_10de.present"
WAIT = 60.0
RESYNC_SECONDS = 2


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class Master:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def start_process(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    if not os.access(argv[0], os.X_OK):
        pytest.fail(f"{argv[0]} is not installed: run `make install`", pytrace=False)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def master(
    controller_manager: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Master]:
    """nfd-master with its defaults (GPU marking on), talking to the test control plane."""
    port, metrics = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("nfd-master") / "nfd-master.log"
    process = start_process(
        [
            str(NFD_MASTER),
            f"--kubeconfig={controller_manager.kubeconfig}",
            f"--port={port}",
            f"--metrics={metrics}",
            "--crd-controller=false",  # no NodeFeatureRule CRD in this cluster
            # Resyncs re-apply every node from its last worker report: more updates the
            # user's labels must survive, and how a label removed by hand comes back.
            f"--resync-period={RESYNC_SECONDS}s",
        ],
        log_path,
    )
    master = Master(process, port, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"nfd-master exited:\n{master.log_tail()}", pytrace=False)
        return http_ok(f"http://127.0.0.1:{metrics}/readyz")

    try:
        wait_until(ready, WAIT, "nfd-master /readyz")
        yield master
    finally:
        stop_process(process)


@dataclass
class GpuCluster:
    """The test's nodes, each backed by a private copy of a fixture host tree."""

    plane: ControlPlane
    master: Master
    workdir: Path
    namespace: str
    roots: dict[str, Path] = field(default_factory=dict)

    worker_configs: dict[str, str] = field(default_factory=dict)

    def add_node(
        self, fixture: str, labels: dict[str, str] | None = None, worker_config: str = ""
    ) -> str:
        name = unique(fixture)
        root = self.workdir / name
        shutil.copytree(FIXTURES / fixture, root, symlinks=True)
        self.roots[name] = root
        self.worker_configs[name] = worker_config
        self.plane.register_node(name, labels=labels)
        self.publish(name)
        return name

    def publish(self, node: str) -> None:
        """One real nfd-worker run (--oneshot) for ``node`` against its host tree, with
        the node's worker configuration (empty unless ``add_node`` got one)."""
        empty = self.workdir / "empty"
        empty.mkdir(exist_ok=True)
        config = self.workdir / f"nfd-worker-{node}.conf"
        config.write_text(self.worker_configs.get(node, ""))
        result = subprocess.run(
            [
                str(NFD_WORKER),
                "--oneshot",
                f"--server=127.0.0.1:{self.master.port}",
                f"--host-prefix={self.roots[node]}",
                f"--config={config}",
                f"--features-dir={empty}",
                f"--hooks-dir={empty}",
                "--metrics=0",
            ],
            env={**os.environ, "NODE_NAME": node},
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert result.returncode == 0, (
            f"nfd-worker for {node} failed:\n{result.stderr}\n--- master ---\n"
            + self.master.log_tail()
        )

    def labels(self, node: str) -> dict[str, str]:
        return dict(self.plane.core.read_node(node).metadata.labels or {})

    def wait_labels(self, node: str, what: str, check: Any) -> dict[str, str]:
        def ready() -> dict[str, str] | None:
            labels = self.labels(node)
            return labels if check(labels) else None

        try:
            return wait_until(ready, WAIT, f"{node}: {what}")
        except TimeoutError as err:
            raise AssertionError(
                f"{err}; labels now {self.labels(node)}\n--- master ---\n{self.master.log_tail()}"
            ) from None

    def remove_gpus(self, node: str) -> None:
        """Take every NVIDIA function out of the node's tree (the card was pulled)."""
        devices = self.roots[node] / "sys/bus/pci/devices"
        for device in devices.iterdir():
            if (device / "vendor").read_text().strip() == "0x10de":
                shutil.rmtree(device)
        shutil.rmtree(self.roots[node] / "proc/driver/nvidia", ignore_errors=True)
        shutil.rmtree(self.roots[node] / "sys/module/nvidia", ignore_errors=True)

    def apply_overlay_daemonset(self, filename: str) -> str:
        manifest = yaml.safe_load((GPU_OVERLAY / filename).read_text())
        self.plane.kubectl(
            "apply", "-n", self.namespace, "-f", str(GPU_OVERLAY / filename), check=True
        )
        return str(manifest["metadata"]["name"])

    def pod_nodes(self, daemonset: str) -> list[str]:
        """Target nodes of the DaemonSet's pods, among this test's nodes (sorted)."""
        pods = self.plane.core.list_namespaced_pod(
            self.namespace, label_selector=f"app={daemonset}"
        ).items
        targets = [target_node(p) for p in pods if p.metadata.deletion_timestamp is None]
        return sorted(t for t in targets if t in self.roots)

    def wait_pods(self, daemonset: str, expected: list[str]) -> None:
        expected = sorted(expected)
        try:
            wait_until(
                lambda: self.pod_nodes(daemonset) == expected,
                WAIT,
                f"{daemonset} pods on exactly {expected}",
            )
        except TimeoutError as err:
            raise AssertionError(f"{err}; pods now on {self.pod_nodes(daemonset)}") from None
        self.bind_pods(daemonset)

    def bind_pods(self, daemonset: str) -> None:
        """Bind the DaemonSet's new pods to their nodes, as kube-scheduler would. This matters:
        the DaemonSet controller finds the pods to delete from a node by spec.nodeName, so
        an unbound pod would never be removed when its node stops matching."""
        pods = self.plane.core.list_namespaced_pod(
            self.namespace, label_selector=f"app={daemonset}"
        ).items
        for pod in pods:
            node = target_node(pod)
            if not pod.spec.node_name and node in self.roots:
                self.plane.bind_pod(self.namespace, pod.metadata.name, node)


def target_node(pod: Any) -> str:
    """The DaemonSet controller pins each pod to its node with a metadata.name affinity."""
    if pod.spec.node_name:
        return str(pod.spec.node_name)
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    (match,) = terms.node_selector_terms[0].match_fields
    return str(match.values[0])


@pytest.fixture
def cluster(
    controller_manager: ControlPlane, master: Master, namespace: str, tmp_path: Path
) -> Iterator[GpuCluster]:
    gpu_cluster = GpuCluster(controller_manager, master, tmp_path, namespace)
    yield gpu_cluster
    for node in gpu_cluster.roots:
        controller_manager.delete_node(node, wait=False)


def is_marked(labels: dict[str, str]) -> bool:
    return labels.get(PRESENT) == "true" and labels.get(DEPLOY_DRIVER) == "true"


def test_driver_lands_on_gpu_nodes_only(cluster: GpuCluster) -> None:
    datacenter = cluster.add_node("gpu-datacenter")
    consumer = cluster.add_node("gpu-consumer")
    cpu = cluster.add_node("cpu-only")

    dc_labels = cluster.wait_labels(datacenter, "marked as a GPU node", is_marked)
    assert dc_labels[PCI_3D] == "true"
    assert dc_labels["nvidia.com/gpu.count"] == "8"
    assert dc_labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    # H100 is MIG-capable: mig-manager is deployed there, not on the GeForce card.
    assert dc_labels["nvidia.com/gpu.deploy.mig-manager"] == "true"
    consumer_labels = cluster.wait_labels(consumer, "marked as a GPU node", is_marked)
    assert consumer_labels[PCI_VGA] == "true"
    assert consumer_labels["nvidia.com/gpu.mode"] == "graphics"
    assert "nvidia.com/gpu.deploy.mig-manager" not in consumer_labels
    cpu_labels = cluster.wait_labels(
        cpu, "feature labels", lambda ls: "feature.node.kubernetes.io/pci-0300_102b.present" in ls
    )
    assert not any(key.startswith("nvidia.com/") for key in cpu_labels), cpu_labels

    assert cluster.apply_overlay_daemonset("driver-daemonset.yaml") == DRIVER_DS
    assert cluster.apply_overlay_daemonset("driver-daemonset-gpu-present.yaml") == PRESENT_DS
    cluster.wait_pods(DRIVER_DS, [datacenter, consumer])
    cluster.wait_pods(PRESENT_DS, [datacenter, consumer])

    # Republishing unchanged features changes nothing: still exactly one pod per GPU node.
    for node in (datacenter, consumer, cpu):
        cluster.publish(node)
    cluster.wait_pods(DRIVER_DS, [datacenter, consumer])


def test_removing_the_gpu_unmarks_the_node_and_deletes_its_driver_pod(
    cluster: GpuCluster,
) -> None:
    datacenter = cluster.add_node("gpu-datacenter")
    consumer = cluster.add_node("gpu-consumer")
    for node in (datacenter, consumer):
        cluster.wait_labels(node, "marked as a GPU node", is_marked)
    cluster.apply_overlay_daemonset("driver-daemonset.yaml")
    cluster.apply_overlay_daemonset("driver-daemonset-gpu-present.yaml")
    cluster.wait_pods(DRIVER_DS, [datacenter, consumer])
    cluster.wait_pods(PRESENT_DS, [datacenter, consumer])

    cluster.remove_gpus(datacenter)
    cluster.publish(datacenter)

    labels = cluster.wait_labels(
        datacenter, "gpu.present=false", lambda ls: ls.get(PRESENT) == "false"
    )
    assert PCI_3D not in labels
    assert not any(key.startswith("nvidia.com/gpu.deploy.") for key in labels), labels
    # The worker's GPU facts are gone with the GPU.
    assert not any(k.startswith(("nvidia.com/gpu.count", "nvidia.com/cuda.")) for k in labels)
    cluster.wait_pods(DRIVER_DS, [consumer])
    cluster.wait_pods(PRESENT_DS, [consumer])

    # gpu.present stays "false" (never deleted) through later updates.
    cluster.publish(datacenter)
    assert cluster.labels(datacenter)[PRESENT] == "false"


def test_other_device_label_fields_keep_the_gpu_nodes_marked(cluster: GpuCluster) -> None:
    """gpu-operator #1469: a worker whose pci source emits other label names than the
    operator's three (here class_device) still gets gpu.present=true from nfd-master,
    which marks from the raw pci.device features too."""
    conf = "sources:\n  pci:\n    deviceLabelFields: [class, device]\n"
    datacenter = cluster.add_node("gpu-datacenter", worker_config=conf)
    consumer = cluster.add_node("gpu-consumer", worker_config=conf)
    cpu = cluster.add_node("cpu-only", worker_config=conf)
    operator_labels = (PCI_3D, PCI_VGA, "feature.node.kubernetes.io/pci-10de.present")

    dc_labels = cluster.wait_labels(datacenter, "marked as a GPU node", is_marked)
    assert dc_labels["feature.node.kubernetes.io/pci-0302_2330.present"] == "true"
    assert not any(key in dc_labels for key in operator_labels), dc_labels
    assert dc_labels["nvidia.com/gpu.deploy.mig-manager"] == "true"
    # The device-id table's labels, spelled as GFD, through the real worker and master.
    assert dc_labels["nvidia.com/gpu.family"] == "hopper"
    assert dc_labels["nvidia.com/gpu.compute.major"] == "9"
    assert dc_labels["nvidia.com/gpu.memory"] == "81559"
    assert dc_labels["nvidia.com/mig.capable"] == "true"
    consumer_labels = cluster.wait_labels(consumer, "marked as a GPU node", is_marked)
    assert consumer_labels["feature.node.kubernetes.io/pci-0300_2684.present"] == "true"
    assert not any(key in consumer_labels for key in operator_labels), consumer_labels
    assert consumer_labels["nvidia.com/mig.capable"] == "false"
    assert "nvidia.com/gpu.deploy.mig-manager" not in consumer_labels
    cpu_labels = cluster.wait_labels(
        cpu, "feature labels", lambda ls: "feature.node.kubernetes.io/pci-0300_0536.present" in ls
    )
    assert not any(key.startswith("nvidia.com/") for key in cpu_labels), cpu_labels

    cluster.apply_overlay_daemonset("driver-daemonset.yaml")
    cluster.wait_pods(DRIVER_DS, [datacenter, consumer])

    # Still marked after another report; unmarked once the hardware is gone.
    cluster.publish(datacenter)
    assert cluster.labels(datacenter)[PRESENT] == "true"
    cluster.remove_gpus(datacenter)
    cluster.publish(datacenter)
    cluster.wait_labels(datacenter, "gpu.present=false", lambda ls: ls.get(PRESENT) == "false")
    cluster.wait_pods(DRIVER_DS, [consumer])


def test_users_driver_false_keeps_the_driver_away_through_every_update(
    cluster: GpuCluster,
) -> None:
    marked_first = cluster.add_node("gpu-datacenter")
    preset = cluster.add_node("gpu-consumer", labels={DEPLOY_DRIVER: "false"})
    cluster.wait_labels(marked_first, "marked as a GPU node", is_marked)
    preset_labels = cluster.wait_labels(
        preset, "gpu.present=true", lambda ls: ls.get(PRESENT) == "true"
    )
    # Set before NFD ever saw the node: NFD fills the other operands, not the driver.
    assert preset_labels[DEPLOY_DRIVER] == "false"
    assert preset_labels[DEPLOY_PLUGIN] == "true"

    cluster.apply_overlay_daemonset("driver-daemonset.yaml")
    cluster.wait_pods(DRIVER_DS, [marked_first])

    # Set after NFD marked the node (the label NFD owns is overwritten by the user).
    cluster.plane.kubectl(
        "label", "node", marked_first, f"{DEPLOY_DRIVER}=false", "--overwrite", check=True
    )
    cluster.wait_pods(DRIVER_DS, [])

    for _ in range(3):
        for node in (marked_first, preset):
            cluster.publish(node)
            labels = cluster.labels(node)
            assert labels[DEPLOY_DRIVER] == "false", labels
            assert labels[PRESENT] == "true" and labels[DEPLOY_PLUGIN] == "true"
    time.sleep(2 * RESYNC_SECONDS)  # and through the master's periodic resyncs
    for node in (marked_first, preset):
        assert cluster.labels(node)[DEPLOY_DRIVER] == "false"
    cluster.wait_pods(DRIVER_DS, [])

    # Handing the node back (label removed) lets NFD mark it again at its next pass (a
    # resync here; unchanged worker reports are not re-applied) and the driver returns.
    cluster.plane.kubectl("label", "node", preset, f"{DEPLOY_DRIVER}-", check=True)
    cluster.wait_labels(preset, "driver label back", is_marked)
    cluster.wait_pods(DRIVER_DS, [preset])


def test_gpu_marking_only_mode_on_labels_from_another_nfd(
    controller_manager: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """`nfd-master --gpu-marking-only` for clusters whose feature labels come from another
    NFD: labels applied with kubectl, marking and placement as above."""
    plane = controller_manager
    gpu, cpu, opted_out = unique("gpu"), unique("cpu"), unique("gpu-off")
    nodes = [gpu, cpu, opted_out]
    plane.register_node(gpu, labels={"feature.node.kubernetes.io/pci-10de.present": "true"})
    plane.register_node(cpu, labels={"feature.node.kubernetes.io/pci-0300_102b.present": "true"})
    plane.register_node(
        opted_out,
        labels={PCI_3D: "true", "nvidia.com/gpu.deploy.operands": "false"},
    )
    log_path = tmp_path / "nfd-master-gpu-only.log"
    process = start_process(
        [
            str(NFD_MASTER),
            "--gpu-marking-only",
            f"--kubeconfig={plane.kubeconfig}",
            f"--metrics={free_port()}",
        ],
        log_path,
    )
    try:

        def labels(node: str) -> dict[str, str]:
            return dict(plane.core.read_node(node).metadata.labels or {})

        def wait(node: str, what: str, check: Any) -> None:
            try:
                wait_until(lambda: check(labels(node)), WAIT, f"{node}: {what}")
            except TimeoutError as err:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{err}; labels {labels(node)}\n{tail}") from None

        wait(gpu, "marked", is_marked)
        wait(opted_out, "gpu.present only", lambda ls: ls.get(PRESENT) == "true")
        assert not any(
            k.startswith("nvidia.com/gpu.deploy.") and k != ("nvidia.com/gpu.deploy.operands")
            for k in labels(opted_out)
        )
        assert PRESENT not in labels(cpu)

        plane.kubectl(
            "apply", "-n", namespace, "-f", str(GPU_OVERLAY / "driver-daemonset.yaml"), check=True
        )

        def driver_pods() -> list[str]:
            pods = plane.core.list_namespaced_pod(namespace, label_selector=f"app={DRIVER_DS}")
            return sorted(
                n
                for p in pods.items
                if p.metadata.deletion_timestamp is None
                if (n := target_node(p)) in nodes
            )

        wait_until(lambda: driver_pods() == [gpu], WAIT, "driver pod on the GPU node only")
        for pod in plane.core.list_namespaced_pod(namespace).items:
            plane.bind_pod(namespace, pod.metadata.name, gpu)  # as kube-scheduler would

        # The other NFD stops reporting the GPU: marking reacts to the Node update.
        plane.kubectl(
            "label", "node", gpu, "feature.node.kubernetes.io/pci-10de.present-", check=True
        )
        wait(
            gpu,
            "gpu.present=false",
            lambda ls: ls.get(PRESENT) == "false" and DEPLOY_DRIVER not in ls,
        )
        wait_until(lambda: driver_pods() == [], WAIT, "driver pod deleted")
    finally:
        stop_process(process)
        for node in nodes:
            plane.delete_node(node, wait=False)
