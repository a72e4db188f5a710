"""Scale scenarios on one API server: ours vs upstream v0.19 nfd-master (issue 19).

One throw-away control plane (etcd + kube-apiserver, tests/kube/controlplane.py, loopback
only), N Node objects and N NodeFeature objects of real size (bench_nodefeature_scale's:
the host-full fixture, kernel.config of 3,000 options). Each side runs, in turn, on the
same objects and freshly registered, unlabelled Nodes:

- ``upstream``: upstream v0.19.0 nfd-master, load from the NodeFeature objects;
- ``ours``: our nfd-master, load from the same NodeFeature objects;
- ``ours-grpc``: our nfd-master with NodeFeatureAPI=false, load from gRPC streams (our
  worker protocol, nfdstream.v1), one stream per node, from a bounded load generator in
  this process (GrpcLoad: loopback only, a node count and a time limit; it stops by
  itself), each stream's first update the same labels and features as the objects.

Phases, one watch over all Nodes throughout (it counts every removal of a
``feature.node.kubernetes.io/`` label from a labelled Node: a flap):

1. cold start: master start to every Node labelled; API requests by verb
   (``apiserver_request_total``, after - before), master peak RSS and CPU seconds;
2. churn: for --churn-periods periods of --churn-period seconds (60 s is the issue's
   minute), --churn-fraction of the nodes each change one feature (the label
   ``feature.node.kubernetes.io/nfbench-churn`` of their NodeFeature or stream), spread over
   the period: label latency p50/p99 (change sent -> the Node watch sees the value), Node
   writes per change, then one period of unchanged resends (a NodeFeature annotation
   bumped, or the same gRPC update sent again): Node writes (target 0); master RSS sampled
   every second over the phase (first and last quarter, to show growth);
3. master restart (SIGTERM, start again) and kube-apiserver restart: removals, and the time
   from the restart until probe changes sent right after it show on their Nodes;
4. leader election (upstream and ours, NodeFeature load): two replicas, the Lease
   holder SIGKILLed, the time until probe changes show, removals.

Bounded: N <= 20,000, time limits per phase, loopback only; it stops by itself and removes
its control plane. ``make bench`` runs a small size (N=100, 5 s periods of 5 %); from
1,000 nodes on the defaults are the issue's (60 s periods of 1 %): ``SCALE=10000 make
bench`` or ``python -m bench.bench_scale --nodes 10000``.
Writes (replaces) its section for that N in bench/results.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import bench_nodefeature_scale as nfs

FNK = nfs.FNK
BENCH_LABEL = nfs.BENCH_LABEL
CHURN_LABEL = f"{FNK}/nfbench-churn"
NAMESPACE = nfs.NAMESPACE
LEASE = "nfd-master.nfd.kubernetes.io"
NODE_WRITE_VERBS = ("PATCH", "UPDATE", "CREATE", "DELETE", "APPLY")
SIDES = ("upstream", "ours", "ours-grpc")
MAX_NODES = 20000
# Ours' best found here: 40 labelled 1,000 nodes in 15 s where 10 took 27 s (results.md).
OUR_PARALLELISM = 40
STREAMS_PER_CHANNEL = 12  # our master allows 16 concurrent streams on one connection


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


# ----------------------------------------------------------------------------------- watch


class ClusterWatch:
    """All Nodes' feature labels, kept by LIST + WATCH (resumed after errors and API server
    restarts, relisted on 410). Counts removals of feature labels from Nodes that carry
    BENCH_LABEL while ``counting``; records when each churn value first shows."""

    def __init__(self, server: str, token: str, ca: Path) -> None:
        self.server, self.headers = server, {"Authorization": f"Bearer {token}"}
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.keys: dict[str, frozenset[str]] = {}
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self.churn: dict[str, str] = {}
        self.seen_at: dict[tuple[str, str], float] = {}
        self.counting = False
        self.removals = 0
        self.removed: list[tuple[float, str, list[str]]] = []
        self.reconnects = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._rv = ""
        threading.Thread(target=self._run, daemon=True, name="cluster-watch").start()

    def _open(self, path: str, timeout: float) -> Any:
        req = urllib.request.Request(self.server + path, headers=self.headers)
        return urllib.request.urlopen(req, context=self.ctx, timeout=timeout)

    def _observe(self, node: str, labels: dict[str, str], now: float) -> None:
        keys = frozenset(k for k in labels if k.startswith(FNK + "/"))
        keys = self._sets.setdefault(keys, keys)
        with self.lock:
            old = self.keys.get(node)
            if old is not None and BENCH_LABEL in old and self.counting:
                missing = old - keys
                if missing:
                    self.removals += len(missing)
                    self.removed.append((now, node, sorted(missing)[:3]))
            self.keys[node] = keys
            value = labels.get(CHURN_LABEL)
            if value is not None and self.churn.get(node) != value:
                self.churn[node] = value
                self.seen_at.setdefault((node, value), now)

    def _list(self) -> None:
        cont, fresh = "", set()
        while True:
            path = "/api/v1/nodes?labelSelector=nfbench%3Dnode&limit=500"
            if cont:
                path += f"&continue={cont}"
            with self._open(path, 60) as r:
                body = json.loads(r.read())
            now = time.monotonic()
            for item in body["items"]:
                meta = item["metadata"]
                fresh.add(meta["name"])
                self._observe(meta["name"], meta.get("labels") or {}, now)
            cont = body["metadata"].get("continue") or ""
            if not cont:
                self._rv = body["metadata"]["resourceVersion"]
                break
        with self.lock:
            for gone in set(self.keys) - fresh:
                del self.keys[gone]

    def _run(self) -> None:
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                path = (
                    f"/api/v1/nodes?labelSelector=nfbench%3Dnode&watch=1&allowWatchBookmarks=true"
                    f"&resourceVersion={self._rv}&timeoutSeconds=60"
                )
                self._response = self._open(path, 90)
                for line in self._response:
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object", {})
                    meta = obj.get("metadata", {})
                    if kind == "ERROR":
                        need_list = obj.get("code") == 410
                        break
                    self._rv = meta.get("resourceVersion") or self._rv
                    if kind == "DELETED":
                        with self.lock:
                            self.keys.pop(meta.get("name"), None)
                            self.churn.pop(meta.get("name"), None)
                    elif kind in ("ADDED", "MODIFIED"):
                        self._observe(meta["name"], meta.get("labels") or {}, time.monotonic())
            except urllib.error.HTTPError as err:
                need_list = err.code == 410 or need_list
                self.reconnects += 1
                self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - connection lost, API server restarting
                if self._stop.is_set():
                    return
                self.reconnects += 1
                self._stop.wait(0.5)

    def labelled(self, names: list[str]) -> int:
        with self.lock:
            return sum(1 for n in names if BENCH_LABEL in self.keys.get(n, ()))

    def wait_labelled(self, names: list[str], deadline: float, tick: Any = None) -> bool:
        while time.monotonic() < deadline:
            if self.labelled(names) == len(names):
                return True
            if tick is not None:
                tick()
            time.sleep(0.25)
        return False

    def wait_seen(self, wanted: dict[tuple[str, str], float], deadline: float) -> list[float]:
        """Latencies of the (node, value) changes sent at the given times, once all show
        (or at the deadline: those that showed)."""
        while time.monotonic() < deadline and not all(k in self.seen_at for k in wanted):
            time.sleep(0.1)
        return [self.seen_at[k] - t for k, t in wanted.items() if k in self.seen_at]

    def stop(self) -> None:
        self._stop.set()
        try:
            self._response.close()
        except Exception:  # noqa: BLE001 - closing a finished stream
            pass


# ------------------------------------------------------------------------------------ load


class NodeFeatureLoad:
    """Changes through the NodeFeature objects (JSON merge patches, 8 clients)."""

    kind = "NodeFeature objects"

    def __init__(self, api: nfs.Api) -> None:
        self.api = api
        self.pool = ThreadPoolExecutor(8)
        self.resends = itertools.count()

    def _patch(self, node: str, body: dict[str, Any]) -> None:
        path = f"/apis/{nfs.GROUP}/{nfs.VERSION}/namespaces/{NAMESPACE}/nodefeatures/{node}"
        self.api.ok("PATCH", path, json.dumps(body).encode(), "application/merge-patch+json")

    def change(self, node: str, value: str, sent: dict[tuple[str, str], float]) -> None:
        def go() -> None:
            sent[(node, value)] = time.monotonic()
            self._patch(node, {"spec": {"labels": {CHURN_LABEL: value}}})

        self.pool.submit(go)

    def resend(self, node: str) -> None:
        """A new resourceVersion (an annotation), the same labels and features."""
        n = next(self.resends)
        self.pool.submit(
            self._patch, node, {"metadata": {"annotations": {"nfbench/resend": str(n)}}}
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class GrpcLoad:
    """One nfdstream.v1 stream per node into our master, from an asyncio loop on a thread
    of this process. Bounded: loopback only, at most MAX_NODES streams, and a deadline
    after which every stream is cancelled and the loop ends by itself. Every update is a
    full one (labels and features); a stream that breaks (master restart) connects again
    after 1 s and sends its full update first, as our worker does."""

    kind = "gRPC streams (nfdstream.v1)"
    PATH = "/nfd.stream.v1.FeatureStream/Connect"

    def __init__(
        self, address: str, names: list[str], spec: dict[str, Any], time_limit: float
    ) -> None:
        from nfd._proto import nfdstream_pb2
        from nfd.features import Features
        from nfd.wire import features_to_proto

        host = address.rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"load generator: {address} is not a loopback address")
        if not 1 <= len(names) <= MAX_NODES:
            raise ValueError(f"load generator: 1..{MAX_NODES} nodes, not {len(names)}")
        self.pb = nfdstream_pb2
        self.address, self.names = address, names
        self.labels = {n: {**spec["labels"], CHURN_LABEL: "g0"} for n in names}
        proto = features_to_proto(Features.from_dict(spec["features"]))
        # Serialized once: a message's encoding followed by another's merges them, so each
        # update is its small part (seq, node_name, full, labels) + these bytes.
        self.features_bytes = nfdstream_pb2.Update(features=proto).SerializeToString()
        self.deadline = time.monotonic() + time_limit
        self.seq = 0
        self.acks = self.unchanged_acks = self.reconnects = self.sent = 0
        self.connected: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self.queues: dict[str, asyncio.Queue[None]] = {}
        self.thread = threading.Thread(target=self._thread, daemon=True, name="grpc-load")
        self.thread.start()

    def _encode(self, node: str) -> bytes:
        self.seq += 1
        small = self.pb.Update(seq=self.seq, node_name=node, full=True)
        small.labels.update(self.labels[node])
        update = small.SerializeToString() + self.features_bytes
        return b"\x0a" + _varint(len(update)) + update  # WorkerMessage.update (field 1)

    def _thread(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        import grpc

        channels = [
            grpc.aio.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(0, len(self.names), STREAMS_PER_CHANNEL)
        ]
        connect = [
            ch.stream_stream(
                self.PATH,
                request_serializer=None,
                response_deserializer=self.pb.MasterMessage.FromString,
            )
            for ch in channels
        ]
        gate = asyncio.Semaphore(100)  # streams opening at once
        tasks = [
            asyncio.ensure_future(self._node(n, connect[i // STREAMS_PER_CHANNEL], gate))
            for i, n in enumerate(self.names)
        ]
        remaining = self.deadline - time.monotonic()
        await asyncio.wait(tasks, timeout=max(0.0, remaining))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()

    async def _node(self, node: str, connect: Any, gate: asyncio.Semaphore) -> None:
        queue: asyncio.Queue[None] = asyncio.Queue()
        self.queues[node] = queue
        while time.monotonic() < self.deadline:
            call = None
            try:
                async with gate:
                    call = connect()
                    await call.write(self._encode(node))
                    self.sent += 1
                    first = await call.read()
                self.connected.add(node)
                self._ack(first)
                reader = asyncio.ensure_future(self._read(node, call))
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done, _ = await asyncio.wait({getter, reader}, return_when="FIRST_COMPLETED")
                    if reader in done:
                        getter.cancel()
                        break
                    await call.write(self._encode(node))
                    self.sent += 1
            except asyncio.CancelledError:
                if call is not None:
                    call.cancel()
                raise
            except Exception:  # noqa: BLE001 - the stream broke: connect again
                pass
            self.connected.discard(node)
            if call is not None:
                call.cancel()
            self.reconnects += 1
            await asyncio.sleep(1.0)

    def _ack(self, msg: Any) -> None:
        if msg is not None and not isinstance(msg, bytes) and msg.WhichOneof("msg") == "ack":
            self.acks += 1
            self.unchanged_acks += int(msg.ack.unchanged)

    async def _read(self, node: str, call: Any) -> None:
        import grpc

        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.WhichOneof("msg") == "resync":
                    self.queues[node].put_nowait(None)
                self._ack(msg)
        except grpc.aio.AioRpcError:
            return  # the stream broke (master restart): _node connects again

    def _trigger(self, node: str) -> None:
        queue = self.queues.get(node)
        if queue is not None:
            self.loop.call_soon_threadsafe(queue.put_nowait, None)

    def change(self, node: str, value: str, sent: dict[tuple[str, str], float]) -> None:
        sent[(node, value)] = time.monotonic()
        self.labels[node] = {**self.labels[node], CHURN_LABEL: value}
        self._trigger(node)

    def resend(self, node: str) -> None:
        self._trigger(node)

    def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.connected) == len(self.names):
                return True
            time.sleep(0.25)
        return False

    def close(self) -> None:
        self.deadline = 0.0
        self.thread.join(30)


class GrpcLoadProcess:
    """GrpcLoad in a child process, driven by lines on its stdin (``change NODE VALUE``,
    ``resend NODE``): this process forks the control plane's components again (API server
    restart), which a process running gRPC's threads must not do."""

    kind = GrpcLoad.kind

    def __init__(
        self, address: str, names: list[str], spec: dict[str, Any], time_limit: float, work: Path
    ) -> None:
        spec_file = work / "grpc-load-spec.json"
        spec_file.write_text(json.dumps({"spec": spec, "names": names}))
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_scale", "--grpc-load", address, str(spec_file)]
            + [f"--limit={time_limit}"],
            stdin=subprocess.PIPE,
            cwd=nfs.REPO,
            text=True,
        )
        self.lock = threading.Lock()

    def _say(self, line: str) -> None:
        assert self.popen.stdin is not None
        with self.lock:
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()

    def change(self, node: str, value: str, sent: dict[tuple[str, str], float]) -> None:
        sent[(node, value)] = time.monotonic()
        self._say(f"change {node} {value}")

    def resend(self, node: str) -> None:
        self._say(f"resend {node}")

    def close(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        try:
            self.popen.wait(40)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def grpc_load_main(address: str, spec_file: Path, limit: float) -> None:
    """The child of GrpcLoadProcess: runs until its stdin closes or the time limit."""
    doc = json.loads(spec_file.read_text())
    load = GrpcLoad(address, doc["names"], doc["spec"], time_limit=limit)
    sent: dict[tuple[str, str], float] = {}
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["change"] and len(words) == 3:
            load.change(words[1], words[2], sent)
        elif words[:1] == ["resend"] and len(words) == 2:
            load.resend(words[1])
    load.close()
    print(
        f"grpc-load: {load.sent} updates sent, {load.acks} acks ({load.unchanged_acks} "
        f"unchanged), {load.reconnects} reconnects",
        flush=True,
    )


# ---------------------------------------------------------------------------------- master


class Sampler:
    """RSS (process tree) and CPU of one master process, every second, on a thread."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self.cpu_s = 0.0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="sampler").start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(1.0):
            try:
                cpu, rss = nfs._tree_cpu_rss(self.proc)
            except psutil.NoSuchProcess:
                return
            self.cpu_s = cpu
            self.samples.append((time.monotonic(), rss))
            try:
                nfs.check_memory()
            except MemoryError as err:
                print(f"scale: {err}: stopping the master", flush=True)
                self.proc.kill()
                return

    def between(self, t0: float, t1: float) -> list[float]:
        return [rss for t, rss in self.samples if t0 <= t <= t1]

    def stop(self) -> None:
        self._stop.set()


class Master:
    def __init__(self, argv: list[str], log: Path, node_name: str) -> None:
        env = {**os.environ, "NODE_NAME": node_name, "KUBERNETES_NAMESPACE": NAMESPACE}
        self.argv, self.node_name = argv, node_name
        with open(log, "ab") as out:
            self.started = time.monotonic()
            self.popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.sampler = Sampler(self.popen.pid)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.sampler.stop()
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()


def side_argv(side: str, kubeconfig: Path, work: Path, leader: bool, grpc_port: int) -> list[str]:
    from tests.kube.controlplane import free_port

    if side == "upstream":
        argv = nfs.upstream_argv(kubeconfig, work)
        return argv + ["-enable-leader-election"] if leader else argv
    if side == "ours":
        argv = nfs.our_argv(kubeconfig)
    else:
        argv = [
            str(nfs.OUR_MASTER),
            f"--kubeconfig={kubeconfig}",
            f"--port={grpc_port}",
            f"--metrics={free_port()}",
            f"--namespace={NAMESPACE}",
            f"--nfd-api-parallelism={nfs.OUR_PARALLELISM}",
            "--feature-gates=NodeFeatureAPI=false,NodeFeatureGroupAPI=false",
            "--enable-gpu-marking=false",
        ]
    return argv + ["--enable-leader-election"] if leader else argv


# ------------------------------------------------------------------------------------ run


@dataclass
class SideFigures:
    side: str
    load: str
    argv: list[str]
    cold_s: float | None = None
    cold_peak_rss: float = 0.0
    cold_cpu_s: float = 0.0
    cold_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    changes: int = 0
    changes_seen: int = 0
    lat_p50: float | None = None
    lat_p99: float | None = None
    churn_writes: int = 0
    resends: int = 0
    resend_writes: int = 0
    rss_first: float = 0.0
    rss_last: float = 0.0
    rss_max: float = 0.0
    churn_s: float = 0.0
    churn_cpu_s: float = 0.0
    churn_api_cpu_s: float = 0.0
    removals: dict[str, int] = field(default_factory=dict)
    back_s: dict[str, float | None] = field(default_factory=dict)
    action_s: dict[str, float] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def node_writes(before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]) -> int:
    return sum(
        after[(v, "nodes")] - before[(v, "nodes")]
        for v in NODE_WRITE_VERBS
        if (v, "nodes") in after
    )


class Run:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.values = itertools.count(1)
        self.names = [f"nfbench-{i:05d}" for i in range(args.nodes)]
        self.k = max(1, round(args.nodes * args.churn_fraction))
        self.cursor = 0

    def pick(self, k: int) -> list[str]:
        out = [self.names[(self.cursor + i) % len(self.names)] for i in range(k)]
        self.cursor = (self.cursor + k) % len(self.names)
        return out

    def probe(self, load: Any) -> dict[tuple[str, str], float]:
        sent: dict[tuple[str, str], float] = {}
        for node in self.pick(self.k):
            load.change(node, f"g{next(self.values)}", sent)
        return sent

    def wait_probe(self, load: Any, began: float, limit: float) -> float | None:
        """Probe changes until one round shows in full; the time from ``began``."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            sent = self.probe(load)
            time.sleep(0.5)
            lat = self.watch.wait_seen(sent, min(deadline, time.monotonic() + 15))
            if len(lat) == len(sent):
                return time.monotonic() - began
        return None

    def churn(self, fig: SideFigures, load: Any, master: Master) -> None:
        a = self.args
        sent: dict[tuple[str, str], float] = {}
        before = nfs.request_counts(self.api)
        apiserver = self.plane.pids()["kube-apiserver"]
        cpu0, api_cpu0 = master.sampler.cpu_s, nfs._cpu(apiserver)
        t0 = time.monotonic()
        for period in range(a.churn_periods):
            start = t0 + period * a.churn_period
            for j, node in enumerate(self.pick(self.k)):
                time.sleep(max(0.0, start + j * a.churn_period / self.k - time.monotonic()))
                load.change(node, f"g{next(self.values)}", sent)
        time.sleep(max(0.0, t0 + a.churn_periods * a.churn_period - time.monotonic()))
        lat = self.watch.wait_seen(sent, time.monotonic() + 60)
        t1 = time.monotonic()
        time.sleep(2)
        mid = nfs.request_counts(self.api)
        fig.changes, fig.changes_seen = len(sent), len(lat)
        fig.lat_p50, fig.lat_p99 = _pct(lat, 0.5), _pct(lat, 0.99)
        fig.churn_writes = node_writes(before, mid)
        fig.churn_cpu_s = master.sampler.cpu_s - cpu0
        fig.churn_api_cpu_s = nfs._cpu(apiserver) - api_cpu0
        # One period of unchanged resends.
        r0 = time.monotonic()
        for j, node in enumerate(self.pick(self.k)):
            time.sleep(max(0.0, r0 + j * a.churn_period / self.k - time.monotonic()))
            load.resend(node)
            fig.resends += 1
        time.sleep(max(0.0, r0 + a.churn_period - time.monotonic()) + 3)
        fig.resend_writes = node_writes(mid, nfs.request_counts(self.api))
        rss = master.sampler.between(t0, time.monotonic())
        if rss:
            q = max(1, len(rss) // 4)
            fig.rss_first = sum(rss[:q]) / q
            fig.rss_last = sum(rss[-q:]) / q
            fig.rss_max = max(rss)
        fig.churn_s = t1 - t0

    def scenario(self, fig: SideFigures, name: str, action: Any, load: Any) -> None:
        """Run ``action`` (it returns the API server's counters just before it restarts
        them, or None), then probe until changes show again: the time from the end of
        the action; removals and Node writes from its start."""
        self.watch.removals = 0
        before = nfs.request_counts(self.api)
        began = time.monotonic()
        reset = action()
        ready = time.monotonic()
        fig.action_s[name] = ready - began
        fig.back_s[name] = self.wait_probe(load, ready, self.args.limit)
        time.sleep(3)
        fig.removals[name] = self.watch.removals
        after = nfs.request_counts(self.api)
        if reset is None:
            fig.writes[name] = node_writes(before, after)
        else:
            fig.writes[name] = node_writes(before, reset) + node_writes(Counter(), after)
        print(
            f"scale: {fig.side} {name}: back in {fig.back_s[name]} s, removals "
            f"{fig.removals[name]} {self.watch.removed[:3]}",
            flush=True,
        )

    def side(self, side: str, fresh_nodes: bool) -> SideFigures:
        from tests.kube.controlplane import free_port

        a = self.args
        if fresh_nodes:
            nfs.delete_nodes(self.api, len(self.names), 300)
            nfs.register_nodes_labelled(self.api, self.names)
        self.watch.counting = False
        if side != "ours-grpc" and not self.created:
            # Created before the first side that reads them: a run that starts with gRPC
            # has its figures before the long part.
            began = time.monotonic()
            nfs.create_nodefeatures(self.api, self.names, self.spec)
            self.created = True
            print(f"scale: {len(self.names)} NodeFeatures in {time.monotonic() - began:.0f} s")
        grpc_port = free_port()
        argv = side_argv(side, self.plane.kubeconfig, self.work, False, grpc_port)
        log = self.work / f"{side}.log"
        load: Any
        if side == "ours-grpc":
            load = None
        else:
            load = NodeFeatureLoad(self.api)
        fig = SideFigures(side, "", argv)
        before = nfs.request_counts(self.api)
        master = Master(argv, log, self.names[0])
        try:
            if side == "ours-grpc":
                time.sleep(1.0)
                load = GrpcLoadProcess(
                    f"127.0.0.1:{grpc_port}", self.names, self.spec, a.limit * 8, self.work
                )
            fig.load = load.kind

            def alive() -> None:
                if master.popen.poll() is not None:
                    raise RuntimeError(f"{side} master exited: {log.read_text()[-2000:]}")

            ok = self.watch.wait_labelled(self.names, master.started + a.limit, alive)
            if ok:
                fig.cold_s = time.monotonic() - master.started
            else:
                fig.notes.append(f"cold start: {self.watch.labelled(self.names)} labelled")
            rss = master.sampler.between(master.started, time.monotonic())
            fig.cold_peak_rss = max(rss) if rss else 0.0
            fig.cold_cpu_s = master.sampler.cpu_s
            time.sleep(2)
            fig.cold_requests = nfs.request_counts(self.api) - before
            print(f"scale: {side} cold {fig.cold_s} s, {fig.cold_peak_rss:.0f} MiB", flush=True)
            if not ok:
                return fig
            self.watch.counting = True
            self.churn(fig, load, master)
            print(
                f"scale: {side} churn {fig.changes_seen}/{fig.changes} p50 {fig.lat_p50} "
                f"p99 {fig.lat_p99} writes {fig.churn_writes}, resend writes "
                f"{fig.resend_writes}, RSS {fig.rss_first:.0f} -> {fig.rss_last:.0f}",
                flush=True,
            )

            def restart_master() -> None:
                nonlocal master
                master.stop()
                master = Master(argv, log, self.names[0])

            if side in a.restarts:
                self.scenario(fig, "master restart", restart_master, load)

            def restart_apiserver() -> Counter[tuple[str, str]]:
                counts = nfs.request_counts(self.api)
                self.plane.restart_component("kube-apiserver")
                self.api = nfs.Api(self.plane.server, self.plane.token, self.ca)
                if isinstance(load, NodeFeatureLoad):
                    load.api = self.api
                return counts

            if side in a.restarts:
                self.scenario(fig, "apiserver restart", restart_apiserver, load)
        finally:
            if load is not None:
                load.close()
            master.stop()
        if side != "ours-grpc" and a.leader:
            self.leader(fig, side)
        return fig

    def lease_holder(self) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
        status, data = self.api.request("GET", path)
        if status != 200:
            return ""
        return str(json.loads(data)["spec"].get("holderIdentity") or "")

    def leader(self, fig: SideFigures, side: str) -> None:
        from tests.kube.controlplane import free_port

        a = self.args
        self.api.request(
            "DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
        )
        load = NodeFeatureLoad(self.api)
        replicas = {
            name: Master(
                side_argv(side, self.plane.kubeconfig, self.work, True, free_port()),
                self.work / f"{side}-{name}.log",
                name,
            )
            # Upstream writes an annotation on the Node named NODE_NAME: existing ones.
            for name in self.names[:2]
        }
        try:
            self.watch.counting = True
            began = time.monotonic()
            steady = self.wait_probe(load, began, a.limit)
            holder = self.lease_holder()
            victim = next((n for n in replicas if holder.startswith(n)), None)
            if steady is None or victim is None:
                fig.notes.append(f"leader election: no steady leader (holder {holder!r})")
                return
            fig.back_s["leader start"] = steady
            fig.removals["leader start"] = self.watch.removals
            fig.action_s["leader start"] = 0.0

            def kill() -> None:
                replicas[victim].stop(signal.SIGKILL)

            self.scenario(fig, "leader killed", kill, load)
            fig.notes.append(f"leader election: {victim} killed, new holder {self.lease_holder()}")
        finally:
            for m in replicas.values():
                m.stop()
            load.close()

    def report(self, figs: list[SideFigures]) -> None:
        section = render(self, figs)
        print(section, flush=True)
        if not self.args.no_write:
            write_results(section, self.args.nodes)

    def run(self) -> list[SideFigures]:
        from tests.kube.controlplane import ControlPlane

        a = self.args
        self.spec = nfs.realistic_spec()
        self.spec["labels"][CHURN_LABEL] = "g0"
        extra = () if a.watch_cache else (f"--watch-cache-sizes=nodefeatures.{nfs.GROUP}#0",)
        self.plane = ControlPlane.start_new(apiserver_args=extra)
        try:
            self.ca = self.plane.kubeconfig.parent / "pki" / "apiserver.crt"
            self.api = nfs.Api(self.plane.server, self.plane.token, self.ca)
            for crd in nfs.CRDS:
                self.plane.kubectl(
                    "apply", "-f", str(nfs.REPO / "deploy" / "base" / crd), check=True
                )
            self.plane.kubectl(
                "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True
            )
            self.plane.kubectl("create", "namespace", NAMESPACE, check=True)
            began = time.monotonic()
            nfs.register_nodes_labelled(self.api, self.names)
            self.created = False
            self.setup_s = time.monotonic() - began
            print(f"scale: {a.nodes} Nodes in {self.setup_s:.0f} s", flush=True)
            self.load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
            self.watch = ClusterWatch(self.plane.server, self.plane.token, self.ca)
            out: list[SideFigures] = []
            for i, side in enumerate(a.sides):
                out.append(self.side(side, fresh_nodes=i > 0))
                if i + 1 < len(a.sides):
                    self.report(out)  # a long run that is cut short keeps what it measured
            self.watch.stop()
            return out
        finally:
            self.plane.stop()


# ---------------------------------------------------------------------------------- report


def _s(v: float | None, unit: str = " s", fmt: str = ".1f") -> str:
    return "not reached" if v is None else f"{v:{fmt}}{unit}"


def render(run: Run, figs: list[SideFigures]) -> str:
    a = run.args
    cols = [f.side for f in figs]
    by = {f.side: f for f in figs}
    title = {
        "upstream": "upstream v0.19.0 (NodeFeature)",
        "ours": "ours (NodeFeature)",
        "ours-grpc": "ours (gRPC)",
    }

    def row(name: str, fn: Any) -> str:
        return f"| {name} | " + " | ".join(fn(by[c]) for c in cols) + " |"

    def verbs(f: SideFigures) -> str:
        v = nfs.by_verb(f.cold_requests)
        return ", ".join(f"{k} {n}" for k, n in sorted(v.items()))

    def per_change(f: SideFigures) -> str:
        return f"{f.churn_writes / f.changes:.2f}" if f.changes else ""

    def thr(f: SideFigures) -> str:
        return f"{a.nodes / f.cold_s:.0f}" if f.cold_s else ""

    lines = [
        f"<!-- scale N={a.nodes} begin (bench/bench_scale.py) -->",
        f"## Scale scenarios, {a.nodes} nodes: cold start, churn, restarts, failover",
        "",
        f"Generated by `bench/bench_scale.py --nodes {a.nodes} --churn-period "
        f"{a.churn_period:g} --churn-periods {a.churn_periods} --churn-fraction "
        f"{a.churn_fraction:g}`; measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average before the masters {run.load_avg} ({os.cpu_count()} cores shared by the "
        "masters, kube-apiserver, etcd, this harness and other work on the machine; all at nice "
        f"{os.getpriority(os.PRIO_PROCESS, 0)}). Objects as "
        "in the NodeFeature cold start above (146 KiB each as served); API server watch cache "
        f"for NodeFeatures {'on' if a.watch_cache else 'off'}. Churn: {run.k} nodes "
        f"({a.churn_fraction:.0%}) change `{CHURN_LABEL}` per {a.churn_period:g} s period, "
        "spread over it; latency is change sent -> a watch over all Nodes sees the value. "
        "Removals: feature labels that disappear from a labelled Node (a flap), counted by "
        "that watch. Took: the restart itself (kube-apiserver: stopped, started, ready again); "
        "back after it: from then until probe changes sent after it show on their Nodes "
        "(for leader start: from the two replicas' start).",
        "",
        "| measure | " + " | ".join(title[c] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
        row("load", lambda f: f.load),
        row("cold start: every Node labelled", lambda f: _s(f.cold_s)),
        row("cold start: nodes labelled per second", thr),
        row("cold start: master peak RSS", lambda f: f"{f.cold_peak_rss:.0f} MiB"),
        row("cold start: master CPU seconds", lambda f: f"{f.cold_cpu_s:.1f}"),
        row("cold start: API requests (nodes, nodefeature*)", verbs),
        row("churn: changes seen / sent", lambda f: f"{f.changes_seen} / {f.changes}"),
        row("churn: label latency p50", lambda f: _s(f.lat_p50, " s", ".2f")),
        row("churn: label latency p99", lambda f: _s(f.lat_p99, " s", ".2f")),
        row("churn: Node writes per change", per_change),
        row(
            "churn: CPU s per change, master / kube-apiserver",
            lambda f: (
                f"{f.churn_cpu_s / f.changes:.3f} / {f.churn_api_cpu_s / f.changes:.3f}"
                if f.changes
                else ""
            ),
        ),
        row("unchanged resends: Node writes", lambda f: f"{f.resend_writes} for {f.resends}"),
        row(
            "churn: master RSS first -> last quarter (max)",
            lambda f: (
                f"{f.rss_first:.0f} -> {f.rss_last:.0f} ({f.rss_max:.0f}) MiB "
                f"over {f.churn_s:.0f} s"
            ),
        ),
    ]
    for name in ("master restart", "apiserver restart", "leader start", "leader killed"):
        if any(name in f.back_s for f in figs):
            lines.append(
                row(
                    f"{name}: took / back after it / label removals / Node writes",
                    lambda f, n=name: (
                        f"{_s(f.action_s.get(n))} / {_s(f.back_s[n])} / "
                        f"{f.removals.get(n, 0)} / {f.writes.get(n, '')}"
                        if n in f.back_s
                        else "not run"
                    ),
                )
            )
    lines += ["", "Settings and notes:", ""]
    for f in figs:
        shown = [Path(f.argv[0]).name, *[x for x in f.argv[1:] if "kubeconfig" not in x]]
        lines.append(f"- {f.side}: `{' '.join(shown)}`" + "".join(f"; {n}" for n in f.notes))
    lines += [f"<!-- scale N={a.nodes} end -->", ""]
    return "\n".join(lines)


def write_results(section: str, nodes: int, path: Path = nfs.RESULTS) -> None:
    text = path.read_text() if path.exists() else ""
    begin, end = f"<!-- scale N={nodes} begin", f"<!-- scale N={nodes} end -->\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=int(os.environ.get("SCALE") or 100))
    p.add_argument("--sides", default=",".join(SIDES))
    p.add_argument(
        "--churn-period",
        type=float,
        default=None,
        help="seconds (default: the issue's 60 from 1,000 nodes on, else 5)",
    )
    p.add_argument("--churn-periods", type=int, default=2)
    p.add_argument(
        "--churn-fraction",
        type=float,
        default=None,
        help="nodes changing per period (default: the issue's 0.01 from 1,000 nodes on, else 0.05)",
    )
    p.add_argument("--limit", type=float, default=None, help="seconds per phase (default: scaled)")
    p.add_argument("--no-leader", dest="leader", action="store_false", help="skip failover")
    p.add_argument(
        "--no-restarts", action="store_true", help="skip the master and API server restarts"
    )
    p.add_argument(
        "--restart-sides", default=None, help="sides that do the restarts (default: all)"
    )
    p.add_argument("--watch-cache", choices=("on", "off", "auto"), default="auto")
    p.add_argument("--no-write", action="store_true", help="print, do not touch results.md")
    p.add_argument(
        "--our-parallelism",
        type=int,
        default=OUR_PARALLELISM,
        help=f"ours' --nfd-api-parallelism (default {OUR_PARALLELISM})",
    )
    args = p.parse_args(argv)
    if not 1 <= args.our_parallelism <= 1000:
        raise SystemExit("--our-parallelism must be 1..1000")
    nfs.OUR_PARALLELISM = args.our_parallelism
    if not 1 <= args.nodes <= MAX_NODES:
        raise SystemExit(f"--nodes must be 1..{MAX_NODES}")
    args.sides = [s for s in args.sides.split(",") if s]
    if not args.sides or any(s not in SIDES for s in args.sides):
        raise SystemExit(f"--sides: a comma list of {', '.join(SIDES)}")
    if args.no_restarts:
        args.restarts = []
    elif args.restart_sides is not None:
        args.restarts = [s for s in args.restart_sides.split(",") if s]
        if any(s not in SIDES for s in args.restarts):
            raise SystemExit(f"--restart-sides: a comma list of {', '.join(SIDES)}")
    else:
        args.restarts = list(SIDES)
    large = args.nodes >= 1000
    if args.churn_period is None:
        args.churn_period = 60.0 if large else 5.0
    if args.churn_fraction is None:
        args.churn_fraction = 0.01 if large else 0.05
    if not 0 < args.churn_fraction <= 1 or args.churn_period <= 0 or args.churn_periods < 1:
        raise SystemExit("--churn-fraction in (0, 1], --churn-period > 0, --churn-periods >= 1")
    args.watch_cache = args.watch_cache == "on" or (
        args.watch_cache == "auto" and args.nodes <= 2000
    )
    if args.limit is None:
        args.limit = 120 + args.nodes * 0.3
    return args


def main(argv: list[str] | None = None) -> None:
    argv = argv if argv is not None else []
    if argv[:1] == ["--grpc-load"]:
        p = argparse.ArgumentParser(prog="bench_scale --grpc-load")
        p.add_argument("--grpc-load", metavar="HOST:PORT", required=True)
        p.add_argument("spec", type=Path)
        p.add_argument("--limit", type=float, required=True)
        child = p.parse_args(argv)
        grpc_load_main(child.grpc_load, child.spec, child.limit)
        return
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="nfscale.") as tmp:
        run = Run(args, Path(tmp))
        run.report(run.run())


if __name__ == "__main__":
    sys.path.insert(0, str(nfs.REPO))
    main(sys.argv[1:])
