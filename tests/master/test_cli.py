"""nfd-master's command line."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from nfd.cli.master import build_parser, main, normalize_argv
from tests.kube.controlplane import free_port, wait_until

BIN = Path(sys.executable).parent


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(normalize_argv(list(argv)))


def test_defaults_follow_upstream() -> None:
    a = parse()
    assert (a.port, a.metrics, a.nfd_api_parallelism) == (8080, 8081, 10)
    assert a.enable_gpu_marking is True and a.enable_taints is False
    assert a.crd_controller is True and a.resync_period == 3600.0


def test_go_style_flags() -> None:
    a = parse("-port=9000", "-enable-taints", "-extra-label-ns=a.io,b.io", "-extra-label-ns=c.io")
    assert a.port == 9000 and a.enable_taints is True
    assert a.extra_label_ns == ["a.io,b.io", "c.io"]
    assert parse("--enable-gpu-marking=false").enable_gpu_marking is False
    assert parse("-featurerules-controller=false").crd_controller is False
    assert parse("-resync-period=90s").resync_period == 90.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ca-file=x"], "must be given together"),
        (["--verify-node-name"], "--verify-node-name needs"),
        (["--nfd-api-parallelism=0"], "must be > 0"),
        (["--instance=-bad"], "--instance"),
        (["--no-publish", "--label-whitelist=("], "--label-whitelist"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(
    argv: list[str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(argv) == 2
    assert message in caplog.text


def _start(
    tmp_path: Path, preexec: Any = None, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], int]:
    port, metrics = free_port(), free_port()
    log = open(tmp_path / "master.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            str(BIN / "nfd-master"),
            "--no-publish",
            f"--port={port}",
            f"--metrics={metrics}",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec,
    )
    log.close()

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            assert proc.poll() is None, (tmp_path / "master.log").read_text()
            return False

    wait_until(healthy, 30, "nfd-master /healthz")
    return proc, metrics


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_master_gracefully(tmp_path: Path, sig: int) -> None:
    proc, _ = _start(tmp_path)
    try:
        began = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert time.monotonic() - began < 3  # a graceful stop, well inside the 5 s grace
        assert "shutting down" in (tmp_path / "master.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_open_files_soft_limit_raised_to_hard(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"hard limit {hard} leaves nothing to raise")

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    proc, _ = _start(tmp_path, lower)
    try:
        limits = Path(f"/proc/{proc.pid}/limits").read_text().splitlines()
        (line,) = [x for x in limits if x.startswith("Max open files")]
        running_soft, running_hard = line.split()[3:5]
        assert running_soft == running_hard != "256", line
    finally:
        proc.kill()
        proc.wait(10)


def test_periodic_resync_runs_and_the_master_still_stops(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path, extra=("--resync-period=1s",))
    try:
        log = tmp_path / "master.log"
        wait_until(lambda: log.read_text().count("periodic resync") >= 2, 10, "two resyncs")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
