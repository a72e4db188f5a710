"""Wire compatibility with upstream NFD v0.16 (hack/upstream-nfd.sh builds it): an upstream
nfd-worker publishes to our master, and our worker publishes to an upstream nfd-master."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import FNK, Harness, make_harness, register
from tests.kube.controlplane import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[2]


def upstream(name: str) -> str:
    result = subprocess.run(
        [str(REPO / "hack" / "upstream-nfd.sh"), "path", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"upstream {name} is not built: run `make install` (hack/upstream-nfd.sh build)\n"
            f"{result.stderr}",
            pytrace=False,
        )
    return result.stdout.strip()


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def test_upstream_worker_publishes_to_our_master(harness: Harness) -> None:
    node = register(harness, "upw")
    _, port = harness.master()
    worker = harness.spawn(
        "upstream-worker",
        [
            upstream("nfd-worker"),
            "-oneshot",
            f"-server=127.0.0.1:{port}",
            f"-kubeconfig={harness.plane.kubeconfig}",
            "-feature-gates=NodeFeatureAPI=false",
            "-label-sources=fake",
            "-feature-sources=fake",
        ],
        env={"NODE_NAME": node},
    )
    assert worker.popen.wait(90) == 0, worker.text()
    labels = harness.wait_labels(node, lambda lb: f"{FNK}/fake-fakefeature1" in lb, "labels")
    assert labels[f"{FNK}/fake-fakefeature1"] == "true"


def test_our_worker_publishes_to_upstream_master(harness: Harness, tmp_path: Path) -> None:
    node = register(harness, "upm")
    # A kubelet registers its Node with annotations; upstream's master patches
    # /metadata/annotations/<key> and fails (422) on a node without that map.
    harness.plane.kubectl(
        "annotate",
        "node",
        node,
        "volumes.kubernetes.io/controller-managed-attach-detach=true",
        check=True,
    )
    port = free_port()
    harness.spawn(
        "upstream-master",
        [
            upstream("nfd-master"),
            f"-port={port}",
            f"-metrics={free_port()}",
            f"-kubeconfig={harness.plane.kubeconfig}",
            "-feature-gates=NodeFeatureAPI=false",
            "-crd-controller=false",
        ],
        env={"NODE_NAME": node},
    )
    fd = tmp_path / "features"
    fd.mkdir()
    (fd / "e2e").write_text("e2e-up=1\n")
    harness.worker(node, "cpu-only", f"127.0.0.1:{port}", fd)
    labels = harness.wait_labels(node, lambda lb: f"{FNK}/e2e-up" in lb, "labels", timeout=90)
    assert labels[f"{FNK}/system-os_release.ID"] == "rhel"
