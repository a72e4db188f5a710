"""nfd-worker daemon RSS by publishing mode: gRPC (to a real nfd-master) vs NodeFeature
(to the real kube-apiserver), on this machine's host tree (``/``).

Each mode runs as a fresh process for ``--seconds`` (default 20); RSS (and USS) is sampled
with psutil every 0.5 s and the steady state is the median of the samples from second 10
on. Modes alternate over ``--rounds`` rounds. Run: ``python -m bench.bench_worker_rss``
(starts etcd + kube-apiserver from tests/kube/controlplane.py; heavy: not part of make test).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tests.e2e.master_harness import BIN, Harness, install_nfr_crd
from tests.e2e.test_master_nodefeatures import install_nf_crd
from tests.kube.controlplane import ControlPlane

MIB = 1024 * 1024


def sample(proc: subprocess.Popen[bytes], seconds: float, settle: float) -> tuple[float, float]:
    ps = psutil.Process(proc.pid)
    rss, uss = [], []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}")
        if time.monotonic() - start >= settle:
            info = ps.memory_full_info()
            rss.append(info.rss)
            uss.append(info.uss)
        time.sleep(0.5)
    return statistics.median(rss) / MIB, statistics.median(uss) / MIB


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--settle", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args()
    plane = ControlPlane.start_new()
    tmp = Path(tempfile.mkdtemp(prefix="nfd-rss-"))
    h = Harness(plane, tmp)
    try:
        install_nfr_crd(plane)
        install_nf_crd(plane)
        plane.kubectl("create", "namespace", "nfd-rss", check=True)
        _, port = h.master("--namespace=nfd-rss")
        common = [str(BIN / "nfd-worker"), "--config=/dev/null"]
        modes = {
            "grpc": [*common, f"--server=127.0.0.1:{port}", "--metrics=0"],
            "nodefeature": [*common, f"--kubeconfig={plane.kubeconfig}", "--port=0"],
        }
        env = {"NODE_NAME": "rss-node", "KUBERNETES_NAMESPACE": "nfd-rss"}
        results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for _ in range(opts.rounds):
            for mode, argv in modes.items():
                proc = h.spawn(f"worker-{mode}", argv, env=env)
                try:
                    results[mode].append(sample(proc.popen, opts.seconds, opts.settle))
                finally:
                    proc.stop()
        for mode, runs in results.items():
            rss = statistics.median(r for r, _ in runs)
            uss = statistics.median(u for _, u in runs)
            each = ", ".join(f"{r:.1f}" for r, _ in runs)
            print(f"{mode}: RSS {rss:.1f} MiB (runs: {each}), USS {uss:.1f} MiB")
    finally:
        h.close()
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
