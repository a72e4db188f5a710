"""Faults on the real control plane while ten workers publish (issue 8).

One nfd-master process, ten in-process publishers (half of them GPU nodes, so the GPU
Operator's ``nvidia.com/gpu.present`` is among the labels that must never flap) and a
watch on the ten Node objects. Each test injects one fault, then checks that every node
converges to exactly the labels its worker publishes last, within a stated bound, and
that no label that had to stay ever disappeared.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.master_harness import Harness, Proc, metric_value, metrics_text
from tests.kube.controlplane import ControlPlane
from tests.reliability.cluster import (
    FNK,
    Churn,
    Fleet,
    NodeWatch,
    delete_nodes,
    register_nodes,
    start_component,
    stop_component,
)
from tests.reliability.recording import Record

WORKERS = 10
GPU_PRESENT = "nvidia.com/gpu.present"
GPU_DRIVER = "nvidia.com/gpu.deploy.driver"
# Workers back off up to 30 s (jittered) while the master is away; after that one
# reconnect, one patch. The bound covers the worst backoff plus a loaded 2-core machine.
MASTER_RESTART_BOUND = 45.0
# The master's queue retries a failing node with backoff capped at 30 s, sooner when a
# new update for the node arrives.
API_RESTART_BOUND = 45.0
HAMMER_BOUND = 30.0


def is_gpu(node: str) -> bool:
    return int(node.rsplit("-", 1)[1]) % 2 == 0


def labels_for(node: str, gen: int) -> dict[str, str]:
    labels = {"rel-keep": "true", "rel-gen": str(gen)}
    if gen % 2:
        labels["rel-odd"] = "true"  # comes and goes: stale labels must be removed
    if is_gpu(node):
        labels["pci-10de.present"] = "true"
    return labels


@dataclass
class Cluster:
    plane: ControlPlane
    harness: Harness
    nodes: list[str]
    watch: NodeWatch
    fleet: Fleet
    master: Proc
    port: int
    converged_at: float = 0.0

    def nfd_labels(self, labels: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in labels.items() if k.startswith(FNK + "/")}

    def converged(self, node: str, labels: dict[str, str]) -> bool:
        want = {f"{FNK}/{k}": v for k, v in self.fleet.expected(node).items()}
        if self.nfd_labels(labels) != want:
            return False
        if is_gpu(node):
            return labels.get(GPU_PRESENT) == "true" and labels.get(GPU_DRIVER) == "true"
        return GPU_PRESENT not in labels

    def wait_converged(self, timeout: float, what: str) -> dict[str, float]:
        return self.watch.wait_all(self.nodes, self.converged, timeout, what)

    def must_stay(self) -> dict[str, dict[str, str | None]]:
        out: dict[str, dict[str, str | None]] = {}
        for node in self.nodes:
            keep: dict[str, str | None] = {f"{FNK}/rel-keep": "true"}
            if is_gpu(node):
                keep |= {f"{FNK}/pci-10de.present": "true", GPU_PRESENT: "true", GPU_DRIVER: "true"}
            out[node] = keep
        return out

    def restart_master(self) -> float:
        self.master, _ = self.harness.master(port=self.port)
        return time.monotonic()

    def assert_master_healthy(self) -> None:
        assert self.master.alive(), self.master.text()[-3000:]
        assert "Traceback" not in self.master.text(), self.master.text()[-5000:]


@pytest.fixture(scope="module")
def cluster(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run = secrets.token_hex(3)
    nodes = register_nodes(plane, f"rel-{run}", WORKERS, run)
    watch = NodeWatch(plane, run)
    harness = Harness(plane, tmp_path_factory.mktemp("faults"))
    try:
        watch.wait_seen(nodes)
        master, port = harness.master()
        fleet = Fleet(f"127.0.0.1:{port}", nodes, labels_for)
        fleet.start()
        c = Cluster(plane, harness, nodes, watch, fleet, master, port)
        c.wait_converged(60, "initial labels")
        c.converged_at = time.monotonic()
        yield c
        fleet.close()
    finally:
        watch.stop()
        harness.close()
        delete_nodes(plane, nodes)


def test_master_sigkill_and_restart(cluster: Cluster, record: Record) -> None:
    runs = 3
    record.category, record.title = (
        "fault",
        (
            f"nfd-master SIGKILLed and restarted while {WORKERS} workers publish "
            "(7 of the nodes change while it is down)"
        ),
    )
    record.bound_s = MASTER_RESTART_BOUND
    record.runs, record.survived = runs, 0
    since = time.monotonic()
    downtimes = []
    for _ in range(runs):
        cluster.master.stop(signal.SIGKILL)
        down_at = time.monotonic()
        changed = cluster.nodes[::2] + cluster.nodes[1:4:2]
        cluster.fleet.bump(changed)  # updates that must not be lost
        time.sleep(1.0)
        ready = cluster.restart_master()
        downtimes.append(round(ready - down_at, 1))
        done = cluster.wait_converged(MASTER_RESTART_BOUND, "after the master restart")
        record.convergence_s += [max(0.0, done[n] - ready) for n in changed]
        cluster.assert_master_healthy()
        record.survived += 1
    flaps = cluster.watch.flaps(cluster.must_stay(), since)
    record.flaps = len(flaps)
    record.measure("master_down_s", downtimes)
    record.notes = (
        "every worker reconnected and republished; stale rel-odd labels removed; "
        "convergence counted from the restarted master being ready"
    )
    assert flaps == []


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_while_updates_flow(
    cluster: Cluster, record: Record, component: str
) -> None:
    record.category, record.title = (
        "fault",
        (f"{component} restarted while updates flow (3 nodes change every 0.5 s)"),
    )
    record.bound_s = API_RESTART_BOUND
    failures_before = metric_value(
        metrics_text(cluster.master), "nfd_master_node_update_failures_total"
    )
    since = time.monotonic()
    churn = Churn(cluster.fleet, cluster.nodes[:3], 0.5)
    try:
        time.sleep(1.5)
        argv = stop_component(cluster.plane, component)
        time.sleep(3.0)
        ready = start_component(cluster.plane, component, argv)
        time.sleep(2.0)
    finally:
        churn.stop()
    record.measure("bumps_during_fault", churn.bumps)
    done = cluster.wait_converged(API_RESTART_BOUND, f"after the {component} restart")
    record.convergence_s = [max(0.0, done[n] - ready) for n in cluster.nodes[:3]]
    flaps = cluster.watch.flaps(cluster.must_stay(), since)
    record.flaps = len(flaps)
    failures = (
        metric_value(metrics_text(cluster.master), "nfd_master_node_update_failures_total")
        - failures_before
    )
    record.measure("failed_api_calls_retried", int(failures))
    record.measure("watch_relists", cluster.watch.gaps)
    record.notes = (
        "the master kept running, retried with backoff and applied the newest update of "
        "every node; convergence counted from the component being ready again"
    )
    assert flaps == []
    cluster.assert_master_healthy()
    record.survived = 1


def test_kubectl_label_hammering(cluster: Cluster, record: Record, tmp_path: Path) -> None:
    record.category, record.title = (
        "fault",
        ("kubectl label/annotate hammering the same nodes while NFD rewrites their labels"),
    )
    record.bound_s = HAMMER_BOUND
    since = time.monotonic()
    per_thread = 12
    user_labels: dict[str, dict[str, str]] = {n: {} for n in cluster.nodes}
    user_ann: dict[str, dict[str, str]] = {n: {} for n in cluster.nodes}
    errors: list[str] = []

    def hammer(kind: str, table: dict[str, dict[str, str]]) -> None:
        for i in range(per_thread):
            node = cluster.nodes[i % len(cluster.nodes)]
            key, value = f"user.example.com/{kind}-{i}", f"v{i}"
            result = cluster.plane.kubectl(kind, "node", node, f"{key}={value}")
            if result.returncode != 0:
                errors.append(result.stderr)
            table[node][key] = value

    churn = Churn(cluster.fleet, cluster.nodes, 0.3)
    threads = [
        threading.Thread(target=hammer, args=("label", user_labels)),
        threading.Thread(target=hammer, args=("annotate", user_ann)),
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        churn.stop()
    stopped = time.monotonic()
    assert errors == []
    done = cluster.wait_converged(HAMMER_BOUND, "after the hammering")
    record.convergence_s = [max(0.0, at - stopped) for at in done.values()]
    # Count both sides: every user label and annotation, every NFD label.
    lost_user = lost_nfd = 0
    for node in cluster.nodes:
        obj = cluster.plane.core.read_node(node)
        labels, ann = obj.metadata.labels or {}, obj.metadata.annotations or {}
        lost_user += sum(1 for k, v in user_labels[node].items() if labels.get(k) != v)
        lost_user += sum(1 for k, v in user_ann[node].items() if ann.get(k) != v)
        want = {f"{FNK}/{k}": v for k, v in cluster.fleet.expected(node).items()}
        lost_nfd += sum(1 for k, v in want.items() if labels.get(k) != v)
    flaps = cluster.watch.flaps(cluster.must_stay(), since)
    record.flaps = len(flaps)
    record.measure("kubectl_writes", 2 * per_thread)
    record.measure("nfd_updates", churn.bumps * len(cluster.nodes))
    record.measure("user_items_lost", lost_user)
    record.measure("nfd_labels_lost", lost_nfd)
    assert (lost_user, lost_nfd) == (0, 0)
    assert flaps == []
    cluster.assert_master_healthy()
    record.survived = 1
    # Leave the nodes as the fixture expects them for the next fault.
    for node in cluster.nodes:
        for key in user_labels[node]:
            cluster.plane.kubectl("label", "node", node, f"{key}-")


def test_zero_flaps_overall(cluster: Cluster, record: Record) -> None:
    """Whole-module tally: from the first converged state to now, across every fault."""
    record.category, record.title = (
        "fault",
        ("All of the above in sequence: Node watch from first convergence to the end"),
    )
    flaps = cluster.watch.flaps(cluster.must_stay(), cluster.converged_at)
    record.flaps = len(flaps)
    record.measure("node_events_watched", cluster.watch.events())
    record.measure("watch_relists", cluster.watch.gaps)
    record.notes = "; ".join(flaps) if flaps else "no label that had to stay ever went missing"
    assert flaps == []
    record.survived = 1


def test_watch_instrument_sees_a_flap(
    cluster: Cluster, plane: ControlPlane, record: Record
) -> None:
    """The flap counter itself: a label removed and re-added by hand within a second is
    counted once (so the zeros above mean something)."""
    record.category, record.title = (
        "fault",
        ("Instrument check: a label removed and re-added by hand within a second is seen"),
    )
    node = cluster.nodes[1]
    plane.kubectl("label", "node", node, "user.example.com/blink=1", check=True)
    cluster.watch.wait_all([node], lambda n, lb: "user.example.com/blink" in lb, 30, "blink")
    since = time.monotonic()
    plane.kubectl("label", "node", node, "user.example.com/blink-", check=True)
    plane.kubectl("label", "node", node, "user.example.com/blink=1", check=True)
    cluster.watch.wait_all([node], lambda n, lb: "user.example.com/blink" in lb, 30, "blink")
    flaps = cluster.watch.flaps({node: {"user.example.com/blink": "1"}}, since)
    record.flaps = None
    record.measure("removals_seen", len(flaps))
    assert len(flaps) == 1, flaps
    plane.kubectl("label", "node", node, "user.example.com/blink-", check=True)
    record.survived = 1
