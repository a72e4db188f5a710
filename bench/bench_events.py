"""Event-driven rediscovery: how fast a change shows, and what an idle worker costs.

1. Feature file -> label on the worker's stdout (``--no-publish``): median and p99
   over 20 changes (target <= 1 s).
2. Kernel uevent (a veth pair appears) -> new features, in-process: median and p99
   over 10 pairs (needs root for ``ip link``).
3. Idle cost of a running worker (default 60 s timer, /metrics served): CPU seconds
   and context switches over 10 s (target: none beyond the safety-net timer).
4. Feature file -> Node label end to end (worker -> nfd-master -> kube-apiserver):
   median and p99 over 20 changes, when the control plane binaries and nfd-master
   are installed; otherwise the reason is printed.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tests.kube.controlplane import free_port
from tests.worker.harness import (
    NodeLabelWatcher,
    WorkerProcess,
    add_veth,
    delete_link,
    veth_names,
    write_atomically,
)

CHANGES = 20
VETH_PAIRS = 10
IDLE_SECONDS = 10.0
LABEL = "feature.node.kubernetes.io/bench-event"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def report(name: str, seconds: list[float], target: str = "") -> None:
    if not seconds:
        print(f"{name}: no samples")
        return
    median = statistics.median(seconds) * 1000
    p99 = percentile(seconds, 99) * 1000
    suffix = f"  (target {target})" if target else ""
    print(f"{name}: median {median:.0f} ms, p99 {p99:.0f} ms, n={len(seconds)}{suffix}")


def local_args(work: Path, features: Path, *extra: str) -> list[str]:
    config = work / "nfd-worker.conf"
    if not config.exists():
        config.write_text("core:\n  sleepInterval: 60s\n")
    return [
        f"--config={config}",
        "--feature-sources=local",
        "--label-sources=local",
        f"--features-dir={features}",
        *extra,
    ]


def bench_file_to_stdout(work: Path) -> None:
    features = work / "features.d"
    features.mkdir()
    worker = WorkerProcess(["--no-publish", "--metrics=0", *local_args(work, features)])
    latencies: list[float] = []
    try:
        worker.wait_first()
        for n in range(1, CHANGES + 1):
            start = time.monotonic()
            write_atomically(features / "bench", f"{LABEL}={n}\n")
            line = worker.wait_for(lambda labels, n=n: labels.get(LABEL) == str(n), 10)
            latencies.append(line.at - start)
            time.sleep(0.2)  # separate changes, so each is its own event
    except AssertionError as err:
        print(f"feature file -> stdout label: FAILED: {str(err).splitlines()[0]}")
        return
    finally:
        worker.close()
    report("feature file -> label on stdout (--no-publish)", latencies, "<= 1000 ms")


def bench_uevent_to_features() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("uevent -> features: skipped (needs root and `ip`)")
        return
    from nfd.hostfs import HostFS
    from nfd.worker.config import WorkerConfig
    from nfd.worker.daemon import WorkerDaemon
    from nfd.worker.discovery import DiscoveryResult

    results: queue.Queue[tuple[float, DiscoveryResult]] = queue.Queue()
    config = WorkerConfig()
    config.core.feature_sources = ["network"]
    config.core.label_sources = ["network"]
    config.core.sleep_interval = 0
    daemon = WorkerDaemon(
        HostFS("/"),
        "bench",
        config,
        lambda r: results.put((time.monotonic(), r)),
        inotify=False,
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    latencies: list[float] = []
    try:
        results.get(timeout=30)
        for _ in range(VETH_PAIRS):
            name, peer = veth_names()
            try:
                start = time.monotonic()
                add_veth(name, peer)
                while True:
                    at, result = results.get(timeout=10)
                    found = {i.get("name") for i in result.features.instances["network.virtual"]}
                    if name in found and peer in found:
                        latencies.append(at - start)
                        break
            finally:
                delete_link(name)
            time.sleep(0.3)  # let the removal pass settle
            while not results.empty():
                results.get_nowait()
    except queue.Empty:
        print("uevent -> features: FAILED: no result within 10 s")
        return
    finally:
        daemon.stop()
        thread.join(10)
    report("uevent (veth pair added) -> new features, in-process", latencies)


def _ctx_switches(proc: psutil.Process) -> int:
    total = 0
    for thread in proc.threads():
        try:
            switches = psutil.Process(thread.id).num_ctx_switches()
        except psutil.Error:
            continue
        total += switches.voluntary + switches.involuntary
    return total


def bench_idle(work: Path) -> None:
    features = work / "features.d"
    features.mkdir(exist_ok=True)
    # As deployed: default 60 s timer, /metrics served, every event source open.
    worker = WorkerProcess(
        ["--no-publish", f"--metrics={free_port()}", *local_args(work, features)]
    )
    try:
        worker.wait_first()
        measure_idle(worker, "idle worker (--no-publish, /metrics served)")
    finally:
        worker.close()


def measure_idle(worker: WorkerProcess, what: str) -> None:
    time.sleep(1.0)
    proc = psutil.Process(worker.proc.pid)
    cpu0, ctx0 = proc.cpu_times(), _ctx_switches(proc)
    time.sleep(IDLE_SECONDS)
    cpu1, ctx1 = proc.cpu_times(), _ctx_switches(proc)
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    print(
        f"{what} over {IDLE_SECONDS:.0f} s: CPU {cpu * 1000:.1f} ms, "
        f"{ctx1 - ctx0} context switches in {proc.num_threads()} threads "
        f"(target: 0 wakeups between 60 s timer ticks)"
    )


def bench_end_to_end(work: Path) -> None:
    name = "feature file -> Node label (worker -> nfd-master -> kube-apiserver)"
    master_bin = Path(sys.executable).parent / "nfd-master"
    if not os.access(master_bin, os.X_OK):
        print(f"{name}: skipped, nfd-master is not installed (make install)")
        return
    try:
        from tests.kube.controlplane import ControlPlane, ControlPlaneError, wait_until
    except ImportError as err:
        print(f"{name}: skipped, test control plane unavailable: {err}")
        return
    try:
        plane = ControlPlane.start_new()
    except ControlPlaneError as err:
        print(f"{name}: skipped, control plane did not start: {str(err).splitlines()[0]}")
        return
    master = None
    worker = None
    watcher = None
    try:
        port, metrics = free_port(), free_port()
        log = open(work / "nfd-master.log", "wb")  # noqa: SIM115 (closed with the process)
        master = subprocess.Popen(
            [
                str(master_bin),
                f"--kubeconfig={plane.kubeconfig}",
                f"--port={port}",
                f"--metrics={metrics}",
                "--crd-controller=false",
                "--resync-period=0s",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            import urllib.request

            if master is not None and master.poll() is not None:
                raise RuntimeError("nfd-master exited")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(ready, 60, "nfd-master /readyz")
        node = f"bench-{secrets.token_hex(3)}"
        plane.register_node(node)
        watcher = NodeLabelWatcher(plane.core, node)
        features = work / "e2e-features.d"
        features.mkdir()
        worker = WorkerProcess(
            [f"--server=127.0.0.1:{port}", "--metrics=0", *local_args(work, features)],
            env={"NODE_NAME": node},
        )
        latencies: list[float] = []
        for n in range(1, CHANGES + 1):
            start = time.monotonic()
            write_atomically(features / "bench", f"{LABEL}={n}\n")
            landed = watcher.wait_for(
                lambda labels, n=n: labels.get(LABEL) == str(n), 15, since=start
            )
            latencies.append(landed - start)
            time.sleep(0.2)
        report(name, latencies, "<= 1000 ms")
        measure_idle(worker, "idle publishing worker (gRPC stream to nfd-master)")
    except (AssertionError, RuntimeError, TimeoutError) as err:
        tail = ""
        if (work / "nfd-master.log").exists():
            tail = (work / "nfd-master.log").read_text(errors="replace").strip()[-300:]
        print(f"{name}: FAILED: {str(err).splitlines()[0]}\n  nfd-master log tail: {tail}")
    finally:
        if watcher is not None:
            watcher.stop()
        if worker is not None:
            worker.close()
        if master is not None and master.poll() is None:
            master.terminate()
            master.wait(10)
        plane.stop()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nfd-bench-events-") as tmp:
        work = Path(tmp)
        for step in (bench_file_to_stdout, bench_idle, bench_end_to_end):
            sub = work / step.__name__
            sub.mkdir()
            step(sub)
        bench_uevent_to_features()


if __name__ == "__main__":
    main()
