"""gpu source speed and memory (``make bench``; not a test).

* pci.ids lookup: the streamed lookup (stops after NVIDIA's block) against reading and
  parsing the whole file, on a synthetic pci.ids of the real file's size and shape
  (~37,000 lines, ~1.4 MB, NVIDIA's block about a quarter of the way in); time and peak
  Python memory (tracemalloc).
* gpu source discover + labels on tests/fixtures/gpu-datacenter (8 GPUs, 4 VFs) and
  gpu-consumer (the pci.ids path).

Run alone: ``.venv/bin/python -m bench.bench_gpu [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nfd.gpu.pciids import lookup_device_names
from nfd.hostfs import HostFS
from nfd.sources import SourceContext, get_source

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def synthetic_pci_ids(path: Path) -> None:
    """~37k lines: 2,200 vendors before NVIDIA, NVIDIA with 1,800 devices, 7,000 after."""
    lines = ["# synthetic pci.ids for bench_gpu\n"]

    def vendor(vid: int, devices: int) -> None:
        lines.append(f"{vid:04x}  Vendor {vid:04x} Corporation Incorporated\n")
        for d in range(devices):
            lines.append(f"\t{d:04x}  Device {d:04x} [Some Product Name {d}]\n")
            if d % 4 == 0:
                lines.append(f"\t\t{vid:04x} {d:04x}  Subsystem of device {d:04x}\n")

    for vid in range(0x0001, 0x0001 + 2200):
        vendor(vid, 3)
    lines.append("10de  NVIDIA Corporation\n")
    for d in range(1800):
        lines.append(f"\t{d + 0x1000:04x}  GXXX [Product {d}]\n")
    for vid in range(0x10DF, 0x10DF + 5400):
        vendor(vid, 3)
    path.write_text("".join(lines))


def measure(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median ms over ``runs`` and the peak traced KiB of one run."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times) * 1000, peak / 1024


def whole_file(path: Path, wanted: set[str]) -> dict[str, str]:
    """The naive way: read everything, index every vendor's devices, then look up."""
    table: dict[tuple[str, str], str] = {}
    current = ""
    for line in path.read_text().splitlines():
        if not line or line[0] == "#":
            continue
        if line[0] != "\t":
            current = line[:4]
        elif not line.startswith("\t\t"):
            table[(current, line[1:5])] = line[5:].strip()
    return {d: table[("10de", d)] for d in wanted if ("10de", d) in table}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_gpu")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pci.ids"
        synthetic_pci_ids(path)
        size_kb = path.stat().st_size / 1024
        n_lines = sum(1 for _ in path.open())
        wanted = {"1707"}  # near the end of NVIDIA's block: the worst case for streaming

        def streamed() -> dict[str, str]:
            with open(path, encoding="utf-8", errors="replace") as f:
                return lookup_device_names(f, "10de", wanted)

        assert streamed() == whole_file(path, wanted) == {"1707": "GXXX [Product 1799]"}
        s_ms, s_kib = measure(streamed, args.runs)
        w_ms, w_kib = measure(lambda: whole_file(path, wanted), args.runs)
        print(f"pci.ids: {n_lines} lines, {size_kb:.0f} KiB")
        print(f"  streamed lookup : {s_ms:7.2f} ms median, peak {s_kib:8.0f} KiB")
        print(f"  whole-file parse: {w_ms:7.2f} ms median, peak {w_kib:8.0f} KiB")

    source = get_source("gpu")
    for name in ("gpu-datacenter", "gpu-consumer"):
        ctx = SourceContext(HostFS(str(FIXTURES / name)))

        def run(ctx: SourceContext = ctx) -> dict[str, str]:
            return source.labels(source.discover(ctx), ctx)

        ms, kib = measure(run, args.runs)
        print(f"gpu source on {name}: {ms:6.2f} ms median, peak {kib:6.0f} KiB")


if __name__ == "__main__":
    main()
