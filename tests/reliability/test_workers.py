"""Worker faults with real nfd-worker processes: killed mid-stream, started before the
master exists. The GPU fixture tree makes the master mark the node for the GPU
Operator, so ``nvidia.com/gpu.present`` is among the labels that must never flap."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import Harness
from tests.kube.controlplane import ControlPlane, free_port
from tests.reliability.cluster import FNK, NodeWatch, delete_nodes, register_nodes
from tests.reliability.recording import Record

# The worker reconnects with backoff capped at 30 s (jittered).
BOUND = 45.0
MUST_STAY = {
    f"{FNK}/rel-keep": "true",
    f"{FNK}/pci-0302_10de.present": "true",
    f"{FNK}/system-os_release.ID": None,
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.deploy.driver": "true",
}


@pytest.fixture
def env(plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[Harness, NodeWatch, str]]:
    run = secrets.token_hex(3)
    (node,) = register_nodes(plane, f"relw-{run}", 1, run)
    watch = NodeWatch(plane, run)
    harness = Harness(plane, tmp_path)
    try:
        watch.wait_seen([node])
        yield harness, watch, node
    finally:
        watch.stop()
        harness.close()
        delete_nodes(plane, [node])


def features(tmp: Path, text: str) -> Path:
    d = tmp / "features.d"
    d.mkdir(exist_ok=True)
    (d / "rel").write_text(text)
    return d


def has(version: str) -> object:
    def pred(_node: str, lb: dict[str, str]) -> bool:
        return (
            lb.get(f"{FNK}/rel-v") == version
            and all(k in lb for k in MUST_STAY)
            and (version != "2" or f"{FNK}/rel-new" in lb)
        )

    return pred


def test_worker_killed_mid_stream_and_restarted(
    env: tuple[Harness, NodeWatch, str], tmp_path: Path, record: Record
) -> None:
    harness, watch, node = env
    record.category, record.title = (
        "fault",
        ("nfd-worker SIGKILLed mid-stream, its features changed while it is dead, restarted"),
    )
    record.bound_s = BOUND
    _, port = harness.master()
    server = f"127.0.0.1:{port}"
    fd = features(tmp_path, "rel-keep=true\nrel-v=1\n")
    worker = harness.worker(node, "gpu-datacenter", server, fd)
    watch.wait_all([node], has("1"), 90, "first labels")
    since = time.monotonic()
    worker.stop(signal.SIGKILL)  # its stream to the master is open: killed mid-stream
    (fd / "rel").write_text("rel-keep=true\nrel-v=2\nrel-new=true\n")
    time.sleep(2.0)  # the master sees the stream die; the node must keep its labels
    started = time.monotonic()
    harness.worker(node, "gpu-datacenter", server, fd)
    done = watch.wait_all([node], has("2"), BOUND, "labels after the worker restart")
    record.convergence_s = [max(0.0, done[node] - started)]
    flaps = watch.flaps({node: MUST_STAY}, since)
    record.flaps = len(flaps)
    record.notes = "convergence counted from the restarted worker's start (process launch)"
    assert flaps == []
    record.survived = 1


def test_worker_started_before_master_exists(
    env: tuple[Harness, NodeWatch, str], tmp_path: Path, record: Record
) -> None:
    harness, watch, node = env
    record.category, record.title = (
        "fault",
        ("nfd-worker started 5 s before nfd-master exists (retries, then publishes)"),
    )
    record.bound_s = BOUND
    port = free_port()
    fd = features(tmp_path, "rel-keep=true\nrel-v=1\n")
    worker = harness.worker(node, "gpu-datacenter", f"127.0.0.1:{port}", fd)
    time.sleep(5.0)
    assert worker.alive(), worker.text()[-3000:]
    master, _ = harness.master(port=port)
    ready = time.monotonic()
    done = watch.wait_all([node], has("1"), BOUND, "labels once the master is up")
    record.convergence_s = [max(0.0, done[node] - ready)]
    record.measure("worker_retries_logged", worker.text().count("reconnecting to"))
    record.notes = "the worker never exited while the master was missing"
    assert worker.alive()
    assert "Traceback" not in worker.text() + master.text()
    record.survived = 1
