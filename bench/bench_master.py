"""nfd-master under load: simulated workers (asyncio gRPC streams in this process)
against a real master process with a counting stand-in for the Kubernetes API.

Reports updates/s and p50/p99 ack latency on the unchanged path (identical resend:
no API write) and the changed path (one label value changes per update), the number
of API writes, and the master's RSS with 1,000 and with 5,000 connected nodes.
Targets (issue 4): >= 2,000 unchanged updates/s, zero writes for unchanged
resends, RSS <= 200 MB at 5,000 nodes.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import grpc
import psutil

from nfd._proto import nfdstream_pb2, nfdstream_pb2_grpc
from nfd.features import Features
from nfd.wire import features_to_proto

LABELS_PER_NODE = 100
CHANNELS = 50


def _serve(port: int, metrics_port: int) -> None:
    """The master side: the real pipeline and gRPC server; API writes only counted."""
    import logging

    from nfd.master.core import Master, WorkItem
    from nfd.master.metrics import MasterMetrics
    from nfd.master.policy import PolicyConfig
    from nfd.master.server import GrpcServer
    from nfd.metrics_http import serve_http

    logging.basicConfig(level=logging.WARNING)
    metrics = MasterMetrics()

    def apply(node: str, item: WorkItem) -> None:
        metrics.updates.inc()  # stands in for one node PATCH

    master = Master(PolicyConfig(), apply, metrics, parallelism=10)
    serve_http(metrics_port, metrics.registry, lambda: True, host="127.0.0.1")

    async def run() -> None:
        server = GrpcServer(master, port, host="127.0.0.1")
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def _labels(node: int, gen: int = 0) -> dict[str, str]:
    out = {f"feature.node.kubernetes.io/bench-{i}": f"value-{i}" for i in range(LABELS_PER_NODE)}
    out["feature.node.kubernetes.io/bench-gen"] = f"g{gen}"
    out["feature.node.kubernetes.io/bench-node"] = f"n{node}"
    return out


def _features() -> object:
    f = Features()
    f.add_flags("cpu.cpuid", [f"FLAG{i}" for i in range(40)])
    f.add_attributes("kernel.version", {"major": "6", "minor": "8", "full": "6.8.0"})
    f.add_instances("pci.device", [{"vendor": "10de", "class": "0302"}] * 4)
    return features_to_proto(f)


class Worker:
    def __init__(self, stub: nfdstream_pb2_grpc.FeatureStreamStub, node: int, feats: object):
        self.node = node
        self.stub = stub
        self.call: Any = None
        self.up: Any = None
        self.seq = 0
        self.feats = feats

    async def send(self, gen: int) -> float:
        if self.call is None:
            self.call = self.stub.Connect()
        self.seq += 1
        if self.up is None:
            # Built once: the load generator must not be the bottleneck.
            self.up = nfdstream_pb2.Update(node_name=f"bench-{self.node}", full=True)
            self.up.labels.update(_labels(self.node, gen))
            self.up.features.CopyFrom(self.feats)  # type: ignore[arg-type]
        up = self.up
        up.seq = self.seq
        up.labels["feature.node.kubernetes.io/bench-gen"] = f"g{gen}"
        began = time.perf_counter()
        await self.call.write(nfdstream_pb2.WorkerMessage(update=up))
        while True:
            reply = await self.call.read()
            if reply.WhichOneof("msg") == "ack" and reply.ack.seq == self.seq:
                return time.perf_counter() - began


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def _scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


async def _phase(workers: list[Worker], gen_of: object, seconds: float) -> tuple[int, list[float]]:
    lat: list[float] = []
    deadline = time.perf_counter() + seconds
    count = 0

    async def loop(w: Worker) -> None:
        nonlocal count
        rounds = 0
        while time.perf_counter() < deadline:
            rounds += 1
            lat.append(await w.send(gen_of(rounds)))  # type: ignore[operator]
            count += 1

    began = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in workers))
    return count, lat + [time.perf_counter() - began]


async def _connect(address: str, n: int, start: int = 0) -> tuple[list[Worker], list]:  # type: ignore[type-arg]
    channels = [grpc.aio.insecure_channel(address) for _ in range(CHANNELS)]
    feats = _features()
    workers = [
        Worker(nfdstream_pb2_grpc.FeatureStreamStub(channels[i % CHANNELS]), start + i, feats)
        for i in range(n)
    ]
    sem = asyncio.Semaphore(200)

    async def first(w: Worker) -> None:
        async with sem:
            try:
                await w.send(0)
            except Exception:
                raise RuntimeError(
                    f"worker {w.node}: {await w.call.code()}: {await w.call.details()}"
                ) from None

    await asyncio.gather(*(first(w) for w in workers))
    return workers, channels


async def _bench(address: str, metrics_port: int, proc: psutil.Process) -> None:
    t0 = time.perf_counter()
    workers, channels = await _connect(address, 1000)
    print(f"1,000 workers connected, full snapshots sent: {time.perf_counter() - t0:.1f}s")
    time.sleep(1.0)
    writes0 = _scrape(metrics_port, "nfd_master_node_updates_total")

    count, lat = await _phase(workers, lambda r: 0, 8.0)
    elapsed = lat.pop()
    time.sleep(0.5)
    writes1 = _scrape(metrics_port, "nfd_master_node_updates_total")
    print(
        f"unchanged path: {count / elapsed:,.0f} updates/s, p50 {_pct(lat, 0.5):.1f} ms, "
        f"p99 {_pct(lat, 0.99):.1f} ms, API writes {writes1 - writes0:.0f} "
        "(target >= 2,000/s, 0 writes)"
    )

    count, lat = await _phase(workers[:10], lambda r: 0, 3.0)
    lat.pop()
    print(
        f"unchanged path, 10 in flight (latency without queueing): p50 {_pct(lat, 0.5):.2f} ms, "
        f"p99 {_pct(lat, 0.99):.2f} ms"
    )

    count, lat = await _phase(workers, lambda r: r, 8.0)
    elapsed = lat.pop()
    time.sleep(1.0)
    writes2 = _scrape(metrics_port, "nfd_master_node_updates_total")
    print(
        f"changed path:   {count / elapsed:,.0f} updates/s, p50 {_pct(lat, 0.5):.1f} ms, "
        f"p99 {_pct(lat, 0.99):.1f} ms, API writes {writes2 - writes1:.0f} "
        f"for {count} changed updates (fake API: instant, so little to coalesce)"
    )
    print(f"master RSS with 1,000 nodes: {proc.memory_info().rss / 2**20:.0f} MiB")

    more, more_channels = await _connect(address, 4000, start=1000)
    time.sleep(1.0)
    print(
        f"master RSS with 5,000 connected nodes: {proc.memory_info().rss / 2**20:.0f} MiB "
        "(target <= 200 MB)"
    )
    for w in workers + more:
        w.call.cancel()
    for ch in channels + more_channels:
        await ch.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    free_port = _free_port
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_master", "--serve", str(port), str(metrics_port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("bench master did not start")
        print(f"master RSS idle: {psutil.Process(proc.pid).memory_info().rss / 2**20:.0f} MiB")
        asyncio.run(_bench(f"127.0.0.1:{port}", metrics_port, psutil.Process(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
