"""A slow Kubernetes API, and a Node deleted while its updates are queued.

nfd-master talks to the apiserver through ``LatencyProxy`` (asyncio, loopback): every
request is delayed a little, and the requests for one chosen node a lot. The master
works on up to ``--nfd-api-parallelism`` (default 10) nodes at once, so one slow node
must not hold up the others.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.master_harness import Harness, Proc, metric_value, metrics_text
from tests.kube.controlplane import ControlPlane, wait_until
from tests.reliability.cluster import (
    FNK,
    RUN_LABEL,
    Fleet,
    LatencyProxy,
    NodeWatch,
    delete_nodes,
    register_nodes,
)
from tests.reliability.recording import Record

WORKERS = 10
BASE_DELAY = 0.02  # every API request
SLOW_DELAY = 3.0  # every request for the slow node
# Fast nodes: one read and one patch at BASE_DELAY each, plus scheduling on 2 busy cores.
FAST_BOUND = 5.0


def labels_for(node: str, gen: int) -> dict[str, str]:
    return {"rel-keep": "true", "rel-gen": str(gen)}


@dataclass
class Slow:
    plane: ControlPlane
    harness: Harness
    proxy: LatencyProxy
    watch: NodeWatch
    fleet: Fleet
    master: Proc
    nodes: list[str]

    def at_gen(self, node: str, labels: dict[str, str]) -> bool:
        return labels.get(f"{FNK}/rel-gen") == str(self.fleet.gen[node])


@pytest.fixture(scope="module")
def slow(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slow]:
    run = secrets.token_hex(3)
    nodes = register_nodes(plane, f"rels-{run}", WORKERS, run)
    tmp = tmp_path_factory.mktemp("slow")
    proxy = LatencyProxy(plane.server, BASE_DELAY)
    watch = NodeWatch(plane, run)
    harness = Harness(plane, tmp)
    try:
        watch.wait_seen(nodes)
        master, port = harness.master(f"--kubeconfig={proxy.kubeconfig(plane, tmp)}")
        fleet = Fleet(f"127.0.0.1:{port}", nodes, labels_for)
        fleet.start()
        s = Slow(plane, harness, proxy, watch, fleet, master, nodes)
        watch.wait_all(nodes, s.at_gen, 60, "initial labels through the proxy")
        yield s
        fleet.close()
    finally:
        watch.stop()
        harness.close()
        proxy.close()
        delete_nodes(plane, nodes)


def test_one_slow_node_does_not_delay_the_others(slow: Slow, record: Record) -> None:
    record.category, record.title = (
        "fault",
        (
            f"Slow API: every request +{BASE_DELAY * 1000:.0f} ms, one node's requests "
            f"+{SLOW_DELAY:.0f} s (latency proxy); {WORKERS - 1} other nodes updated meanwhile"
        ),
    )
    record.bound_s = FAST_BOUND
    slow_node, fast = slow.nodes[0], slow.nodes[1:]
    slow.proxy.slow[slow_node] = SLOW_DELAY
    since = time.monotonic()
    try:
        fast_times: list[float] = []
        for _round in range(2):  # the second round starts while the slow node is busy
            began = time.monotonic()
            slow.fleet.bump()
            done = slow.watch.wait_all(fast, slow.at_gen, 30, "fast nodes")
            fast_times += [at - began for at in done.values()]
        slow_done = slow.watch.wait_all([slow_node], slow.at_gen, 60, "the slow node")
        slow_s = slow_done[slow_node] - since
    finally:
        slow.proxy.slow.clear()
    record.convergence_s = fast_times
    record.measure("slow_node_converged_s", round(slow_s, 1))
    record.measure("slow_node_requests_delayed", slow.proxy.delayed.get(slow_node, 0))
    record.measure("api_requests_through_proxy", slow.proxy.requests)
    flaps = slow.watch.flaps({n: {f"{FNK}/rel-keep": "true"} for n in slow.nodes}, since)
    record.flaps = len(flaps)
    record.notes = "convergence = fast nodes, from the update to the label on the Node"
    assert max(fast_times) < FAST_BOUND, fast_times
    assert slow_s >= SLOW_DELAY  # the proxy really slowed that node
    assert flaps == []
    record.survived = 1


def test_node_deleted_with_updates_queued(slow: Slow, plane: ControlPlane, record: Record) -> None:
    record.category, record.title = (
        "fault",
        ("Node deleted while updates for it are queued (its API calls slowed to 1.5 s)"),
    )
    record.bound_s = FAST_BOUND
    doomed, others = slow.nodes[-1], slow.nodes[:-1]
    failures = metric_value(metrics_text(slow.master), "nfd_master_node_update_failures_total")
    slow.proxy.slow[doomed] = 1.5
    since = time.monotonic()
    try:
        slow.fleet.bump([doomed])  # in flight (slowed)
        time.sleep(0.5)
        slow.fleet.bump([doomed])  # queued behind it
        plane.core.delete_node(doomed)
        slow.fleet.bump([doomed])  # queued for a node that is gone
        began = time.monotonic()
        slow.fleet.bump(others)
        done = slow.watch.wait_all(others, slow.at_gen, 30, "the other nodes")
    finally:
        slow.proxy.slow.clear()
    record.convergence_s = [at - began for at in done.values()]
    line = f"node {doomed} not found"
    wait_until(lambda: line in slow.master.text(), 30, "the not-found log line")
    record.measure("log_line", f"node {doomed}: {line} (not retried)")
    after = metric_value(metrics_text(slow.master), "nfd_master_node_update_failures_total")
    record.measure("update_failures_counted", int(after - failures))
    flaps = slow.watch.flaps({n: {f"{FNK}/rel-keep": "true"} for n in others}, since)
    record.flaps = len(flaps)
    assert max(record.convergence_s) < FAST_BOUND
    assert slow.master.alive() and "Traceback" not in slow.master.text()

    # The node comes back (kubelet re-registers): the next update labels it again.
    run = slow.watch.selector.split("=", 1)[1]
    plane.register_node(doomed, labels={RUN_LABEL: run})
    slow.fleet.bump([doomed])
    slow.watch.wait_all([doomed], slow.at_gen, 30, "the re-registered node")
    record.notes = (
        "no crash, one clear log line, no retries for the gone node; the re-created node "
        "is labelled on its next update"
    )
    assert flaps == []
    record.survived = 1
