"""The hostile probe's per-node state findings (issue 15, item 2), against a real
nfd-master process and a real kube-apiserver: updates for made-up node names keep
nothing, a deleted Node's state goes with it, and the master's RSS comes back to its
baseline after each flood while the real nodes keep their labels."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest

from nfd._proto import labeler_pb2, labeler_pb2_grpc
from tests.e2e.master_harness import Harness, Proc, metric_value, metrics_text
from tests.kube.controlplane import ControlPlane, wait_until
from tests.reliability.cluster import FNK, NodeWatch, delete_nodes, register_nodes
from tests.reliability.recording import Record

pytestmark = pytest.mark.e2e

# RSS the master may keep above its baseline once a flood is over (allocator slack).
RSS_BOUND_MB = 32
SETTLE_S = 20  # how long RSS may take to come back (malloc_trim runs within ~1 s)
STEADY_S = 4  # no new low for this long: what is left is allocator slack, not state
STATES = "nfd_master_node_states"


@dataclass
class Rss:
    proc: Proc
    peak_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def now_mb(self) -> float:
        return psutil.Process(self.proc.popen.pid).memory_info().rss / 2**20

    def sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mb = max(self.peak_mb, self.now_mb())

    def __enter__(self) -> Rss:
        self.peak_mb = self.now_mb()
        threading.Thread(target=self.sample, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def settle(rss: Rss, baseline: float) -> float:
    """RSS once it is back within the bound, or once it has stopped falling (no new low
    by 1 MB for STEADY_S), or the last value after SETTLE_S."""
    deadline = time.monotonic() + SETTLE_S
    low, low_at = rss.now_mb(), time.monotonic()
    while True:
        now, at = rss.now_mb(), time.monotonic()
        if now < low - 1.0:
            low, low_at = now, at
        if now <= baseline + RSS_BOUND_MB or at - low_at > STEADY_S or at > deadline:
            return now
        time.sleep(0.5)


@pytest.fixture
def harness(plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(plane, tmp_path)
    yield h
    h.close()


@pytest.fixture
def legit(plane: ControlPlane) -> Iterator[tuple[list[str], NodeWatch]]:
    run = secrets.token_hex(3)
    names = register_nodes(plane, f"relp-{run}", 2, run)
    watch = NodeWatch(plane, run)
    try:
        watch.wait_seen(names)
        yield names, watch
    finally:
        watch.stop()
        delete_nodes(plane, names)


def labels(count: int, tag: str) -> dict[str, str]:
    return {f"probe-{tag}-{i:05d}": f"value-{i}" for i in range(count)}


def set_labels(channel: grpc.Channel, node: str, payload: dict[str, str]) -> grpc.StatusCode:
    stub = labeler_pb2_grpc.LabelerStub(channel)
    try:
        stub.SetLabels(labeler_pb2.SetLabelsRequest(node_name=node, labels=payload), timeout=60)
    except grpc.RpcError as err:
        assert "does not exist" in (err.details() or ""), err.details()
        return err.code()
    return grpc.StatusCode.OK


def flood(address: str, names: list[str], payload: dict[str, str]) -> dict[str, int]:
    """SetLabels for every name from 8 threads; the count of each status code."""
    codes: dict[str, int] = {}
    options = [("grpc.max_send_message_length", -1)]
    with grpc.insecure_channel(address, options=options) as channel:
        with ThreadPoolExecutor(8) as pool:
            for code in pool.map(lambda n: set_labels(channel, n, payload), names):
                codes[code.name] = codes.get(code.name, 0) + 1
    return codes


def publish_legit(address: str, nodes: list[str], watch: NodeWatch) -> dict[str, str]:
    mine = {"rel-probe-keep": "true", "rel-probe-other": "1"}
    with grpc.insecure_channel(address) as channel:
        for node in nodes:
            assert set_labels(channel, node, mine) == grpc.StatusCode.OK
    want = {f"{FNK}/{k}": v for k, v in mine.items()}
    watch.wait_all(
        nodes, lambda n, lb: all(lb.get(k) == v for k, v in want.items()), 30, "legit labels"
    )
    return want


def baseline_mb(address: str, rss: Rss) -> float:
    # A small flood first, so that gRPC's threads and buffers exist before the baseline.
    flood(address, [f"warmup-{i}" for i in range(50)], labels(1000, "w"))
    time.sleep(2.0)
    return rss.now_mb()


def test_made_up_node_names_keep_nothing_and_rss_returns_to_baseline(
    harness: Harness, legit: tuple[list[str], NodeWatch], record: Record
) -> None:
    record.category, record.title = (
        "hostile",
        "SetLabels for 3,000 made-up node names x 1,000 labels, then 300 x 10,000 labels "
        "(the probe's 300 x 10,000 took the master from 100 to 266 MB for good)",
    )
    nodes, watch = legit
    master, port = harness.master()
    address = f"127.0.0.1:{port}"
    want = publish_legit(address, nodes, watch)
    with Rss(master) as rss:
        base = baseline_mb(address, rss)
        began = time.monotonic()
        wide = flood(address, [f"made-up-{i}" for i in range(3000)], labels(1000, "a"))
        deep = flood(address, [f"made-up-deep-{i}" for i in range(300)], labels(10_000, "b"))
        flood_s = time.monotonic() - began
        after = settle(rss, base)
    text = metrics_text(master)
    refused = metric_value(text, 'nfd_master_node_update_refused_total{reason="unknown-node"}')
    record.measure("rss_baseline_mb", round(base, 1))
    record.measure("rss_peak_mb", round(rss.peak_mb, 1))
    record.measure("rss_after_mb", round(after, 1))
    record.measure("flood_s", round(flood_s, 1))
    record.measure("status_codes", {**wide, **{f"deep_{k}": v for k, v in deep.items()}})
    record.measure("node_states", metric_value(text, STATES))
    assert "OK" not in wide and "OK" not in deep, (wide, deep)
    assert refused >= 3300 + 50
    assert metric_value(text, STATES) == len(nodes)  # only the real nodes have state
    assert after <= base + RSS_BOUND_MB, (base, rss.peak_mb, after)
    for node in nodes:
        assert all(watch.latest(node).get(k) == v for k, v in want.items())
    assert master.alive()
    record.notes = (
        f"RSS {base:.0f} MB -> peak {rss.peak_mb:.0f} MB -> {after:.0f} MB; every update "
        "refused (node does not exist), the real nodes kept their labels"
    )
    record.survived = 1


def label_and_delete(
    plane: ControlPlane, master: Proc, address: str, rss: Rss, count: int, per_node: int
) -> tuple[float, float]:
    """Register ``count`` Nodes, label each with ``per_node`` labels through the master,
    delete them: (RSS with their state, seconds until the state was dropped)."""
    run = secrets.token_hex(3)
    doomed = register_nodes(plane, f"relp-gone-{run}", count, run)
    watch = NodeWatch(plane, run)
    try:
        watch.wait_seen(doomed)
        codes = flood(address, doomed, labels(per_node, "c"))
        assert codes == {"OK": count}, codes
        key = f"{FNK}/probe-c-{per_node - 1:05d}"
        watch.wait_all(doomed, lambda n, lb: key in lb, 120, "the big label sets")
        wait_until(
            lambda: metric_value(metrics_text(master), STATES) >= count, 10, "the nodes' state"
        )
        states = metric_value(metrics_text(master), STATES)
        loaded = rss.now_mb()
        delete_nodes(plane, doomed)
        gone_at = time.monotonic()
        wait_until(
            lambda: metric_value(metrics_text(master), STATES) == states - count,
            30,
            "the deleted nodes' state to be dropped",
        )
        return loaded, time.monotonic() - gone_at
    finally:
        watch.stop()
        delete_nodes(plane, doomed)


def test_deleted_nodes_state_is_dropped_and_the_memory_reused(
    harness: Harness, plane: ControlPlane, legit: tuple[list[str], NodeWatch], record: Record
) -> None:
    count, per_node = 100, 2000
    record.category, record.title = (
        "hostile",
        f"Twice: {count} real Nodes labelled with {per_node} labels each, then deleted",
    )
    nodes, watch = legit
    master, port = harness.master()
    address = f"127.0.0.1:{port}"
    want = publish_legit(address, nodes, watch)
    with Rss(master) as rss:
        base = baseline_mb(address, rss)
        loaded1, dropped1 = label_and_delete(plane, master, address, rss, count, per_node)
        after1 = settle(rss, base)
        loaded2, dropped2 = label_and_delete(plane, master, address, rss, count, per_node)
        after2 = settle(rss, base)
    record.measure("rss_baseline_mb", round(base, 1))
    record.measure("rss_loaded_mb", [round(loaded1, 1), round(loaded2, 1)])
    record.measure("rss_after_delete_mb", [round(after1, 1), round(after2, 1)])
    record.measure("rss_peak_mb", round(rss.peak_mb, 1))
    record.measure("state_dropped_s", [round(dropped1, 2), round(dropped2, 2)])
    assert metric_value(metrics_text(master), STATES) == len(nodes)
    # Python's small-object arenas keep the high-water mark of the first round (its
    # objects are all freed); the second round reuses it instead of adding to it.
    assert after2 <= after1 + RSS_BOUND_MB, (base, loaded1, after1, loaded2, after2)
    for node in nodes:
        assert all(watch.latest(node).get(k) == v for k, v in want.items())
    assert master.alive()
    record.notes = (
        f"RSS {base:.0f} MB -> {loaded1:.0f} MB with {count} nodes' state -> {after1:.0f} MB "
        f"after the delete (state dropped in {dropped1:.1f} s); second round {loaded2:.0f} "
        f"-> {after2:.0f} MB"
    )
    record.survived = 1
