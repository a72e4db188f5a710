"""deploy/overlays/gpu on the real node, the worker reading a GPU fixture tree (hostPath).

A second worker configuration: the overlay, with the worker's host volumes pointed at a copy of
tests/fixtures/gpu-datacenter (an 8-GPU H100 node) and a 1 s rediscovery interval, and the two
example driver DaemonSets running the pause image. The master marks the node
nvidia.com/gpu.present=true, one driver pod runs (their shared anti-affinity allows one per
node); the GPUs removed from the tree, the marks go and so does the driver pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.deployment import (
    MASTER,
    WORKER,
    apply_test_overlay,
    clear_nfd_labels,
    delete_manifests,
    pods,
    wait_running,
)
from tests.cluster.nodewatch import NodeLabelWatch
from tests.kube.cluster import Cluster, Images
from tests.kube.controlplane import REPO_ROOT, wait_until

GPU_OVERLAY = REPO_ROOT / "deploy" / "overlays" / "gpu"
FIXTURE = REPO_ROOT / "tests" / "fixtures" / "gpu-datacenter"
DRIVER_NAMESPACE = "nvidia-gpu-driver"
DRIVER = "app.kubernetes.io/component=nvidia-driver"
GPU_PRESENT = "nvidia.com/gpu.present"

WORKER_CONF = """\
core:
  sleepInterval: 1s
sources:
  pci:
    deviceClassWhitelist: ["02", "0200", "0207", "0300", "0302"]
    deviceLabelFields: [vendor]
"""


def _kustomization(tree: Path, pause: str, overlay: Path) -> dict[str, object]:
    """The overlay plus patches: only host paths, the rediscovery interval and images."""
    host_paths = {
        "host-sys": tree / "sys",
        "host-proc": tree / "proc",
        "host-os-release": tree / "etc" / "os-release",
        "host-boot": tree / "boot",
        "host-lib-modules": tree / "lib" / "modules",
        "host-usr-lib": tree / "usr" / "lib",
        "host-usr-share": tree / "usr" / "share",
    }
    worker = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "nfd-worker", "namespace": "node-feature-discovery"},
        "spec": {
            "template": {
                "spec": {
                    "volumes": [
                        {"name": name, "hostPath": {"path": str(path)}}
                        for name, path in host_paths.items()
                    ]
                }
            }
        },
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "nfd-worker-conf", "namespace": "node-feature-discovery"},
        "data": {"nfd-worker.conf": WORKER_CONF},
    }

    def driver(name: str) -> dict[str, object]:
        # The pause image has no nvidia-driver, no sh for the startup probe; this VM has no
        # /dev/log, and /run/nvidia stays off the host.
        return {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": DRIVER_NAMESPACE},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "nvidia-driver-ctr",
                                "image": pause,
                                "imagePullPolicy": "Never",
                                "command": ["/pause"],
                                "startupProbe": None,
                            }
                        ],
                        "volumes": [
                            {"name": "run-nvidia", "hostPath": {"path": str(tree / "run-nvidia")}},
                            {
                                "name": "dev-log",
                                "hostPath": {"path": str(tree / "dev-log"), "type": "FileOrCreate"},
                            },
                        ],
                    }
                }
            },
        }

    patches = [worker, config, driver("nvidia-driver-daemonset")]
    patches.append(driver("nvidia-driver-daemonset-gpu-present"))
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes no absolute path for a directory resource
        "resources": [os.path.relpath(GPU_OVERLAY, overlay)],
        "patches": [{"patch": json.dumps(patch)} for patch in patches],
    }


@pytest.fixture(scope="module")
def gpu_host(cluster: Cluster, images: Images) -> Iterator[Path]:
    """A copy of the GPU fixture tree, readable by the worker (uid 65534), applied as above."""
    root = Path(tempfile.mkdtemp(prefix="nfd-gpu-host.", dir="/var/tmp"))
    root.chmod(0o755)
    tree = root / "tree"
    shutil.copytree(FIXTURE, tree, symlinks=True)
    for missing in ("boot", "lib/modules", "usr/lib", "run-nvidia"):
        (tree / missing).mkdir(parents=True, exist_ok=True)
    # The driver's /run/nvidia has Bidirectional propagation, which needs a shared mount; this
    # host's / is private (no systemd to make it shared), so the directory gets its own.
    run_nvidia = str(tree / "run-nvidia")
    subprocess.run(["mount", "--bind", run_nvidia, run_nvidia], check=True)
    subprocess.run(["mount", "--make-rshared", run_nvidia], check=True)
    overlay = root / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        json.dumps(_kustomization(tree, images.pause_name, overlay), indent=2)
    )
    clear_nfd_labels(cluster)
    try:
        rendered = apply_test_overlay(cluster, overlay)
        try:
            yield tree
        finally:
            delete_manifests(cluster, rendered)
    finally:
        subprocess.run(["umount", "-R", run_nvidia], check=False)
        shutil.rmtree(root, ignore_errors=True)
        clear_nfd_labels(cluster)


def _driver_pods(cluster: Cluster) -> list[dict]:
    return pods(cluster, DRIVER, DRIVER_NAMESPACE)


def _remove_nvidia_devices(tree: Path) -> int:
    devices = tree / "sys" / "bus" / "pci" / "devices"
    removed = 0
    for device in devices.iterdir():
        if (device / "vendor").read_text().strip() == "0x10de":
            if device.is_symlink():
                device.unlink()
            else:
                shutil.rmtree(device)
            removed += 1
    return removed


def test_gpu_marks_the_node_and_the_driver_pod_follows_the_gpu(
    cluster: Cluster, gpu_host: Path, node_labels: NodeLabelWatch
) -> None:
    wait_running(cluster, MASTER, 90)
    wait_running(cluster, WORKER, 90)
    node_labels.wait_for(lambda labels: labels.get(GPU_PRESENT) == "true", 60, "gpu.present")
    assert node_labels.current().get("nvidia.com/gpu.deploy.driver") == "true"
    (driver,) = wait_running(cluster, DRIVER, 90, namespace=DRIVER_NAMESPACE)
    # The other driver DaemonSet's pod stays Pending: one driver pod per node.
    assert len(_driver_pods(cluster)) == 2

    assert _remove_nvidia_devices(gpu_host) >= 8
    mark = node_labels.mark()
    node_labels.wait_for(
        lambda labels: labels.get(GPU_PRESENT) == "false", 30, "gpu.present=false", since=mark
    )
    assert "nvidia.com/gpu.deploy.driver" not in node_labels.current()
    wait_until(lambda: not _driver_pods(cluster), 60, "the driver pods to go", interval=0.5)
