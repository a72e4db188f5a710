"""Discovery speed and memory on this machine (``make bench``; not a test).

Measures, against the issue's targets:
* the median wall time of discovering every default source in-process,
* the median wall time of ``nfd export labels`` as a whole process (start-up,
  imports, discovery, JSON out),
* the peak RSS of ``nfd-worker --oneshot --no-publish``.

Run alone: ``.venv/bin/python -m bench.bench_discovery [--runs N] [--process-runs N]``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nfd
from nfd.hostfs import HostFS
from nfd.worker.config import build_config
from nfd.worker.discovery import discover_features, run_discovery

BIN = Path(sys.executable).parent
TARGET_DISCOVERY_MS = 50.0
TARGET_PROCESS_MS = 300.0
TARGET_RSS_MB = 40.0


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_in_process(runs: int, host: HostFS) -> tuple[list[float], list[float], dict]:
    """Wall times of feature discovery alone and of discovery + labels."""
    config = build_config({}, "defaults")
    run_discovery(host, config, "bench-node")  # warm up: imports, first reads
    features_only, with_labels = [], []
    per_source: dict[str, list[float]] = {}
    for _ in range(runs):
        start = time.perf_counter()
        discover_features(host, config, "bench-node")
        features_only.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = run_discovery(host, config, "bench-node")
        with_labels.append(time.perf_counter() - start)
        for name, seconds in result.durations.items():
            per_source.setdefault(name, []).append(seconds)
    return features_only, with_labels, per_source


def child_env() -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set on some dev machines) would make every run
    # recompile our modules; an installed package always has its bytecode.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NFD_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["NODE_NAME"] = "bench-node"
    return env


def run_child(argv: list[str]) -> tuple[float, int, float]:
    """Run a command; its wall time (s), peak RSS (KiB) and CPU time (s), from wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env()
    )
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{stderr.decode(errors='replace')}")
    # ru_maxrss is in KiB on Linux. CPU time shows the cost apart from waiting
    # for a busy machine's cores.
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="in-process discovery runs")
    parser.add_argument("--process-runs", type=int, default=15, help="whole-process runs")
    parser.add_argument("--host-prefix", default="/")
    args = parser.parse_args(argv)

    # Bytecode for the package, as an installed one has (__pycache__ is git-ignored).
    compileall.compile_dir(str(Path(nfd.__file__).parent), quiet=1)
    host = HostFS(args.host_prefix)
    features_only, with_labels, per_source = time_in_process(args.runs, host)

    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "nfd-worker.conf"
        config.write_text("# defaults\n")
        common = ["--host-prefix", args.host_prefix, "--config", str(config)]
        export = [sys.executable, str(BIN / "nfd"), "export", "labels", *common]
        run_child(export)  # warm the page cache
        process_runs = [run_child(export) for _ in range(args.process_runs)]
        process_times = [wall for wall, _, _ in process_runs]
        process_cpu = [cpu for _, _, cpu in process_runs]
        worker = [sys.executable, str(BIN / "nfd-worker"), "--oneshot", "--no-publish", *common]
        worker_rss = max(run_child(worker)[1] for _ in range(3))
        export_rss = max(run_child(export)[1] for _ in range(3))

    rows = [
        (f"discovery, all sources, in-process (median of {args.runs})",
         f"{median_ms(features_only):.1f} ms", f"<= {TARGET_DISCOVERY_MS:.0f} ms",
         median_ms(features_only) <= TARGET_DISCOVERY_MS),
        ("  + labels (run_discovery)", f"{median_ms(with_labels):.1f} ms", "", None),
        (f"nfd export labels, whole process (median of {args.process_runs})",
         f"{median_ms(process_times):.0f} ms", f"<= {TARGET_PROCESS_MS:.0f} ms",
         median_ms(process_times) <= TARGET_PROCESS_MS),
        ("  its CPU time (user + system, median)", f"{median_ms(process_cpu):.0f} ms", "", None),
        ("nfd-worker --oneshot --no-publish, peak RSS", f"{worker_rss / 1024:.1f} MB",
         f"<= {TARGET_RSS_MB:.0f} MB", worker_rss / 1024 <= TARGET_RSS_MB),
        ("nfd export labels, peak RSS", f"{export_rss / 1024:.1f} MB", "", None),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'measured':>10}  {'target':>10}  ok")
    for what, measured, target, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        print(f"{what:<{width}}  {measured:>10}  {target:>10}  {mark}")
    load = os.getloadavg()[0]
    print(f"\nload average {load:.1f} on {os.cpu_count()} CPUs (wall times grow with load)")
    print("per source, median ms:", end=" ")
    print(", ".join(f"{n} {median_ms(v):.2f}" for n, v in sorted(per_source.items())))


if __name__ == "__main__":
    main()
