"""Discovery speed and memory on this machine (``make bench``; not a test).

Measures, against the issue's targets:
* the median wall time of discovering every default source in-process,
* the median wall time of ``nfd export labels`` and ``nfd-worker --oneshot
  --no-publish`` as whole processes (start-up, imports, discovery, JSON out),
* their peak RSS (GNU time's figure, see ``peak_rss_kib``).

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


def run_child(argv: list[str]) -> tuple[float, float]:
    """Run a command; its wall time and CPU time (user + system), in seconds, from wait4."""
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
    # CPU time shows the cost apart from waiting for a busy machine's cores.
    return elapsed, usage.ru_utime + usage.ru_stime


GNU_TIME = "/usr/bin/time"


def peak_rss_kib(argv: list[str]) -> int | None:
    """Peak RSS (KiB) of a fresh process running ``argv``, as GNU time reports it.

    Not our own wait4's ru_maxrss: a child starts as a fork (or vfork) of this
    benchmark process, and Linux carries that address space's high-water mark over
    exec, so every child "peaked" at the benchmark's own size. GNU time forks from
    its own ~1 MiB process. None when GNU time (Debian's ``time``) is not installed.
    """
    if not os.access(GNU_TIME, os.X_OK):
        return None
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(
            [GNU_TIME, "-f", "%M", "-o", out.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(),
            check=True,
        )
        return int(out.read().split()[-1])


def max_rss_kib(argv: list[str], runs: int = 5) -> int | None:
    samples = [peak_rss_kib(argv) for _ in range(runs)]
    return None if None in samples else max(s for s in samples if s is not None)


def _mib(kib: int | None) -> str:
    return "no GNU time" if kib is None else f"{kib / 1024:.1f} MB"


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
        process_times = [wall for wall, _ in process_runs]
        process_cpu = [cpu for _, cpu in process_runs]
        worker = [sys.executable, str(BIN / "nfd-worker"), "--oneshot", "--no-publish", *common]
        run_child(worker)
        worker_times = [run_child(worker)[0] for _ in range(args.process_runs)]
        worker_rss = max_rss_kib(worker)
        export_rss = max_rss_kib(export)

    rows = [
        (f"discovery, all sources, in-process (median of {args.runs})",
         f"{median_ms(features_only):.1f} ms", f"<= {TARGET_DISCOVERY_MS:.0f} ms",
         median_ms(features_only) <= TARGET_DISCOVERY_MS),
        ("  + labels (run_discovery)", f"{median_ms(with_labels):.1f} ms", "", None),
        (f"nfd export labels, whole process (median of {args.process_runs})",
         f"{median_ms(process_times):.0f} ms", f"<= {TARGET_PROCESS_MS:.0f} ms",
         median_ms(process_times) <= TARGET_PROCESS_MS),
        ("  its CPU time (user + system, median)", f"{median_ms(process_cpu):.0f} ms", "", None),
        (f"nfd-worker --oneshot --no-publish, whole process (median of {args.process_runs})",
         f"{median_ms(worker_times):.0f} ms", f"<= {TARGET_PROCESS_MS:.0f} ms",
         median_ms(worker_times) <= TARGET_PROCESS_MS),
        ("nfd-worker --oneshot --no-publish, peak RSS", _mib(worker_rss),
         f"<= {TARGET_RSS_MB:.0f} MB", None if worker_rss is None
         else worker_rss / 1024 <= TARGET_RSS_MB),
        ("nfd export labels, peak RSS", _mib(export_rss), "", None),
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
