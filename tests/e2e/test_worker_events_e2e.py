"""Event to Node label, end to end: a feature file written on the "node" reaches the Node
object through a real nfd-worker (event-driven, no timer), a real nfd-master and a real
kube-apiserver.

The latency of every change is printed (``pytest -s`` shows it); bench/bench_events.py
reports median and p99 over more changes.
"""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.controlplane import ControlPlane, free_port, wait_until
from tests.worker.harness import NodeLabelWatcher, WorkerProcess, write_atomically

REPO = Path(__file__).resolve().parents[2]
NFD_MASTER = Path(sys.executable).parent / "nfd-master"
LABEL = "feature.node.kubernetes.io/e2e-event"
# Generous: a shared 2-core machine; the target (≤ 1 s) is measured by the benchmark.
REACTION_TIMEOUT = 10.0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def master(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real nfd-master writing to the test control plane; yields its gRPC port."""
    if not os.access(NFD_MASTER, os.X_OK):
        pytest.fail(f"{NFD_MASTER} is not installed: run `make install`", pytrace=False)
    port, metrics = free_port(), free_port()
    log_path = tmp_path_factory.mktemp("nfd-master") / "nfd-master.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                str(NFD_MASTER),
                f"--kubeconfig={control_plane.kubeconfig}",
                f"--port={port}",
                f"--metrics={metrics}",
                "--crd-controller=false",
                "--resync-period=0s",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def ready() -> bool:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"nfd-master exited:\n{tail}", pytrace=False)
        return http_ok(f"http://127.0.0.1:{metrics}/readyz")

    try:
        wait_until(ready, 60, "nfd-master /readyz")
        yield port
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_feature_file_change_reaches_the_node(
    control_plane: ControlPlane, master: int, tmp_path: Path
) -> None:
    node = f"events-{secrets.token_hex(3)}"
    control_plane.register_node(node)
    features = tmp_path / "features.d"
    features.mkdir()
    config = tmp_path / "nfd-worker.conf"
    config.write_text("core:\n  sleepInterval: 0s\n")
    watcher = NodeLabelWatcher(control_plane.core, node)
    worker = WorkerProcess(
        [
            f"--server=127.0.0.1:{master}",
            "--metrics=0",
            f"--config={config}",
            "--feature-sources=local",
            "--label-sources=local",
            f"--features-dir={features}",
        ],
        env={"NODE_NAME": node},
    )
    latencies: list[float] = []
    try:
        # The worker publishes its (empty) first snapshot; nothing of ours is on the Node yet.
        for n in range(1, 6):
            start = time.monotonic()
            write_atomically(features / "e2e", f"{LABEL}={n}\n")
            landed = watcher.wait_for(
                lambda labels, n=n: labels.get(LABEL) == str(n),
                REACTION_TIMEOUT,
                what=f"{LABEL}={n}",
                since=start,
            )
            latencies.append(landed - start)
            time.sleep(0.2)
        start = time.monotonic()
        (features / "e2e").unlink()
        landed = watcher.wait_for(
            lambda labels: LABEL not in labels, REACTION_TIMEOUT, what="label removed", since=start
        )
        latencies.append(landed - start)
        assert worker.proc.poll() is None, worker.stderr()[-3000:]
    finally:
        watcher.stop()
        code = worker.stop()
        worker.close()
    assert code == 0
    print(
        f"\nfeature file -> Node label: median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} changes"
    )
