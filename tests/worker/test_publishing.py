"""nfd-worker publishing to a real nfd-master process over loopback gRPC.

The master runs with ``--no-publish`` (no Kubernetes API): it logs the labels it
would apply, which is what these tests read. The path onto real Node objects is
tested in tests/e2e/test_worker_events_e2e.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker.harness import REPO_ROOT, WorkerProcess, write_atomically
from tests.worker.test_worker_process import free_port, run_cli

NFD_MASTER = Path(sys.executable).parent / "nfd-master"


class MasterProcess:
    def __init__(self, log_path: Path) -> None:
        if not os.access(NFD_MASTER, os.X_OK):
            pytest.fail(f"{NFD_MASTER} is not installed: run `make install`", pytrace=False)
        self.port, self.metrics = free_port(), free_port()
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(NFD_MASTER),
                    "--no-publish",
                    f"--port={self.port}",
                    f"--metrics={self.metrics}",
                    "--crd-controller=false",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nfd-master did not come up:\n{self.log()[-3000:]}", pytrace=False)
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.metrics}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"nfd-master never logged {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def master(tmp_path: Path) -> Iterator[MasterProcess]:
    process = MasterProcess(tmp_path / "nfd-master.log")
    try:
        yield process
    finally:
        process.stop()


def test_oneshot_publishes_and_exits_zero(master: MasterProcess, tmp_path: Path) -> None:
    features = tmp_path / "features.d"
    features.mkdir()
    (features / "x").write_text("vendor.example/oneshot=42\n")
    config = tmp_path / "nfd-worker.conf"
    config.write_text("")
    proc = run_cli(
        "--oneshot",
        f"--server=127.0.0.1:{master.port}",
        f"--config={config}",
        "--feature-sources=local",
        "--label-sources=local",
        f"--features-dir={features}",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"published 1 labels to 127.0.0.1:{master.port}" in proc.stderr
    master.wait_log("node nfd-test-node")
    master.wait_log("vendor.example/oneshot")


def test_oneshot_to_an_unreachable_master_fails_clearly(tmp_path: Path) -> None:
    config = tmp_path / "nfd-worker.conf"
    config.write_text("")
    port = free_port()  # nothing listens there
    proc = run_cli(
        "--oneshot", f"--server=127.0.0.1:{port}", f"--config={config}", "--label-sources=system"
    )
    assert proc.returncode == 1
    assert f"labels to 127.0.0.1:{port} failed" in proc.stderr
    assert "UNAVAILABLE" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_running_worker_publishes_each_change(master: MasterProcess, tmp_path: Path) -> None:
    features = tmp_path / "features.d"
    features.mkdir()
    config = tmp_path / "nfd-worker.conf"
    config.write_text("core:\n  sleepInterval: 0s\n")
    worker = WorkerProcess(
        [
            f"--server=127.0.0.1:{master.port}",
            "--metrics=0",
            f"--config={config}",
            "--feature-sources=local",
            "--label-sources=local",
            f"--features-dir={features}",
        ]
    )
    try:
        master.wait_log("worker for node nfd-test-node connected", timeout=30)
        write_atomically(features / "x", "vendor.example/first=1\n")
        master.wait_log("vendor.example/first")
        write_atomically(features / "x", "vendor.example/second=2\n")
        master.wait_log("vendor.example/second")
        assert worker.proc.poll() is None, worker.stderr()
        assert worker.stop() == 0
        # Nothing on stdout when publishing.
        assert worker.lines == []
    finally:
        worker.close()
