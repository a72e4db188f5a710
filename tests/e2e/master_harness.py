"""Run real nfd-master and nfd-worker processes against the test control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.kube.controlplane import ControlPlane, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIXTURES = REPO / "tests" / "fixtures"
FNK = "feature.node.kubernetes.io"
CRD = REPO / "deploy" / "base" / "crd-nodefeaturerules.yaml"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class Harness:
    plane: ControlPlane
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}-{len(self.procs)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=REPO,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def master(self, *extra: str, port: int | None = None, wait: bool = True) -> tuple[Proc, int]:
        port = port or free_port()
        metrics = free_port()
        proc = self.spawn(
            "master",
            [
                str(BIN / "nfd-master"),
                f"--kubeconfig={self.plane.kubeconfig}",
                f"--port={port}",
                f"--metrics={metrics}",
                "--resync-period=0",
                *extra,
            ],
        )
        proc.metrics_port = metrics  # type: ignore[attr-defined]
        if wait:
            try:
                wait_until(lambda: _ready(metrics, proc), 60, "nfd-master /readyz")
            except TimeoutError as err:
                raise AssertionError(f"{err}\n{proc.text()[-3000:]}") from None
        return proc, port

    def worker(
        self,
        node: str,
        tree: str,
        server: str,
        features_dir: Path,
        *extra: str,
    ) -> Proc:
        return self.spawn(
            f"worker-{node}",
            [
                str(BIN / "nfd-worker"),
                f"--server={server}",
                f"--host-prefix={FIXTURES / tree}",
                f"--features-dir={features_dir}",
                "--metrics=0",
                "--options",
                '{"core": {"sleepInterval": "1s"}}',
                *extra,
            ],
            env={"NODE_NAME": node},
        )

    def node_labels(self, node: str) -> dict[str, str]:
        return dict(self.plane.core.read_node(node).metadata.labels or {})

    def node(self, node: str) -> Any:
        return self.plane.core.read_node(node)

    def wait_labels(
        self, node: str, pred: Callable[[dict[str, str]], bool], what: str, timeout: float = 60
    ) -> dict[str, str]:
        def check() -> dict[str, str] | None:
            labels = self.node_labels(node)
            return labels if pred(labels) else None

        try:
            return wait_until(check, timeout, f"{what} on node {node}", interval=0.3)
        except TimeoutError as err:
            raise AssertionError(
                f"{err}\nlabels: {self.node_labels(node)}\n{self.logs()}"
            ) from None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.text()[-2500:]}" for p in self.procs)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for name in self.nodes:
            self.plane.delete_node(name, wait=False)


def _ready(port: int, proc: Proc) -> bool:
    if not proc.alive():
        raise AssertionError(f"nfd-master exited {proc.popen.returncode}:\n{proc.text()}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def metrics_text(proc: Proc) -> str:
    port = proc.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def make_harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    """Body of each test module's `harness` fixture: processes and nodes are cleaned up."""
    h = Harness(control_plane, tmp_path)
    yield h
    h.close()


def install_nfr_crd(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "-f", str(CRD), check=True)
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/nodefeaturerules.nfd.k8s-sigs.io",
        "--timeout=60s",
        check=True,
    )
    # The apiserver needs a moment before the new resource is served.
    wait_until(
        lambda: control_plane.kubectl("get", "nodefeaturerules").returncode == 0,
        30,
        "nodefeaturerules to be served",
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


def register(h: Harness, prefix: str) -> str:
    name = unique(prefix)
    h.plane.register_node(name)
    h.nodes.append(name)
    return name


def now() -> float:
    return time.monotonic()
