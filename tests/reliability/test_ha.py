"""Two nfd-master replicas with --enable-leader-election behind a Service.

Workers reach the masters through a Service (here ``ServiceProxy``: round robin over the
replicas whose /readyz answers), so some of them land on the standby. Every node must
still get its labels while the leader lives, and keep them when the leader dies.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.master_harness import Harness
from tests.kube.controlplane import ControlPlane, wait_until
from tests.reliability.cluster import (
    FNK,
    Fleet,
    NodeWatch,
    ServiceProxy,
    delete_nodes,
    register_nodes,
)
from tests.reliability.recording import Record

NODES = 4
LEASE = (
    "--enable-leader-election",
    "--namespace=default",
    "--leader-elect-lease-duration=3s",
    "--leader-elect-renew-deadline=2s",
    "--leader-elect-retry-period=0.5s",
)
BOUND = 30.0


def labels_for(node: str, gen: int) -> dict[str, str]:
    return {"rel-keep": "true", "rel-gen": str(gen)}


@pytest.fixture
def env(
    plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Harness, NodeWatch, list[str]]]:
    run = secrets.token_hex(3)
    nodes = register_nodes(plane, f"relha-{run}", NODES, run)
    watch = NodeWatch(plane, run)
    harness = Harness(plane, tmp_path_factory.mktemp("ha"))
    plane.kubectl("delete", "lease", "-n", "default", "nfd-master.nfd.kubernetes.io")
    try:
        watch.wait_seen(nodes)
        yield harness, watch, nodes
    finally:
        watch.stop()
        harness.close()
        delete_nodes(plane, nodes)


def test_workers_behind_a_service_with_two_replicas(
    env: tuple[Harness, NodeWatch, list[str]], plane: ControlPlane, record: Record
) -> None:
    harness, watch, nodes = env
    record.category, record.title = (
        "fault",
        (
            f"Two nfd-master replicas (leader election) behind a Service, {NODES} workers; "
            "then the leader is SIGKILLed"
        ),
    )
    record.bound_s = BOUND
    record.runs, record.survived = 2, 0
    leader, port_a = harness.master(*LEASE)
    wait_until(
        lambda: (
            plane.kubectl(
                "get", "lease", "-n", "default", "nfd-master.nfd.kubernetes.io"
            ).returncode
            == 0
        ),
        30,
        "the lease",
    )
    standby, port_b = harness.master(*LEASE, wait=False)
    service = ServiceProxy(
        [(port_a, leader.metrics_port), (port_b, standby.metrics_port)],  # type: ignore[attr-defined]
        listeners=NODES,
    )
    fleet = Fleet("", nodes, labels_for, servers=dict(zip(nodes, service.addresses, strict=True)))
    try:
        time.sleep(2.0)  # the standby is up (ready or not, as it reports)
        began = time.monotonic()
        fleet.start()

        def converged(node: str, lb: dict[str, str]) -> bool:
            return lb.get(f"{FNK}/rel-gen") == str(fleet.gen[node])

        try:
            done = watch.wait_all(nodes, converged, BOUND, "labels with two replicas")
        except AssertionError as err:
            missing = [n for n in nodes if not converged(n, watch.latest(n))]
            record.measure("connections_routed", dict(service.routed))
            record.notes = (
                f"BUG: {len(missing)} of {NODES} nodes never labelled while the leader lives: "
                "their workers reached the standby, which accepts them and does not write"
            )
            raise AssertionError(f"{record.notes}\n{err}") from None
        record.convergence_s = [at - began for at in done.values()]
        record.survived = 1
        since = time.monotonic()
        leader.stop(signal.SIGKILL)
        fleet.bump()
        killed = time.monotonic()
        done = watch.wait_all(nodes, converged, BOUND + 15, "labels after the leader died")
        record.convergence_s += [at - killed for at in done.values()]
        flaps = watch.flaps({n: {f"{FNK}/rel-keep": "true"} for n in nodes}, since)
        record.flaps = len(flaps)
        record.measure("connections_routed", dict(service.routed))
        assert flaps == []
        record.survived = 2
    finally:
        fleet.close()
        service.close()
