"""Labels that come from NodeFeatureRules across an nfd-master restart.

After a restart the master must not remove a rule's labels because it has not read the
NodeFeatureRule objects yet: the workers reconnect and send their full state as soon as
the gRPC port is open, which can be before the rules are listed. The latency proxy
delays the NodeFeatureRule list/watch requests to make that window visible.
"""

from __future__ import annotations

import json
import secrets
import signal
import time
from collections.abc import Iterator

import pytest

from tests.e2e.master_harness import Harness, install_nfr_crd
from tests.kube.controlplane import ControlPlane
from tests.reliability.cluster import (
    FNK,
    Fleet,
    LatencyProxy,
    NodeWatch,
    delete_nodes,
    register_nodes,
)
from tests.reliability.recording import Record

NODES = 4
RULES_DELAY = 3.0  # NodeFeatureRule requests through the proxy, after the restart
BOUND = 45.0


def labels_for(node: str, gen: int) -> dict[str, str]:
    return {"rel-keep": "true", "rel-gen": str(gen)}


@pytest.fixture
def env(
    plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Harness, LatencyProxy, NodeWatch, list[str], str]]:
    run = secrets.token_hex(3)
    tmp = tmp_path_factory.mktemp("rules-restart")
    install_nfr_crd(plane)
    nodes = register_nodes(plane, f"relr-{run}", NODES, run)
    rule = {
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
        "kind": "NodeFeatureRule",
        "metadata": {"name": f"rel-restart-{run}"},
        "spec": {"rules": [{"name": "always", "labels": {"rel-rule": "true"}}]},
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps(rule), check=True)
    proxy = LatencyProxy(plane.server)
    watch = NodeWatch(plane, run)
    harness = Harness(plane, tmp)
    try:
        watch.wait_seen(nodes)
        yield harness, proxy, watch, nodes, str(proxy.kubeconfig(plane, tmp))
    finally:
        watch.stop()
        harness.close()
        proxy.close()
        plane.kubectl("delete", "nodefeaturerule", f"rel-restart-{run}", "--wait=false")
        delete_nodes(plane, nodes)


def test_rule_labels_survive_master_restart(
    env: tuple[Harness, LatencyProxy, NodeWatch, list[str], str], record: Record
) -> None:
    harness, proxy, watch, nodes, kubeconfig = env
    record.category, record.title = (
        "fault",
        (
            f"nfd-master SIGKILLed and restarted while its NodeFeatureRule list is slow "
            f"(+{RULES_DELAY:g} s): rule labels must stay"
        ),
    )
    record.bound_s = BOUND
    master, port = harness.master(f"--kubeconfig={kubeconfig}")
    fleet = Fleet(f"127.0.0.1:{port}", nodes, labels_for)
    fleet.start()
    try:

        def converged(node: str, lb: dict[str, str]) -> bool:
            return lb.get(f"{FNK}/rel-rule") == "true" and lb.get(f"{FNK}/rel-gen") == str(
                fleet.gen[node]
            )

        watch.wait_all(nodes, converged, 60, "rule labels")
        since = time.monotonic()
        master.stop(signal.SIGKILL)
        proxy.slow_paths["nodefeaturerules"] = RULES_DELAY
        fleet.bump(nodes[:2])
        # Not waiting for /readyz: workers do not either, they reconnect to the port.
        master, _ = harness.master(f"--kubeconfig={kubeconfig}", port=port, wait=False)
        started = time.monotonic()
        done = watch.wait_all(nodes, converged, BOUND, "after the restart")
        time.sleep(RULES_DELAY)  # past the slow rule listing: any removal has happened
        record.convergence_s = [max(0.0, done[n] - started) for n in nodes[:2]]
        flaps = watch.flaps(
            {n: {f"{FNK}/rel-rule": "true", f"{FNK}/rel-keep": "true"} for n in nodes}, since
        )
        record.flaps = len(flaps)
        record.measure("rule_requests_delayed", proxy.delayed.get("nodefeaturerules", 0))
        record.notes = (
            "; ".join(flaps[:3]) if flaps else "rule labels never left the nodes"
        ) + "; convergence counted from the master process start"
        if flaps:
            record.notes = "BUG: " + record.notes
        assert flaps == []
        record.survived = 1
    finally:
        proxy.slow_paths.clear()
        fleet.close()
