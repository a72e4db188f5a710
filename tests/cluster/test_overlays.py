"""deploy/overlays/oneshot, tls and prometheus applied unchanged on the real node."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.deployment import (
    MASTER,
    NAMESPACE,
    WORKER,
    apply_kustomization,
    clear_nfd_labels,
    host_labels,
    netns_get,
    nfd_labels,
    wait_running,
)
from tests.cluster.nodewatch import NodeLabelWatch
from tests.kube.cluster import Cluster
from tests.kube.controlplane import REPO_ROOT

OVERLAYS = REPO_ROOT / "deploy" / "overlays"
MONITORING_CRDS = REPO_ROOT / "tests" / "deploy" / "crds"


@pytest.fixture
def clean(cluster: Cluster) -> Iterator[list[Path]]:
    """No nfd labels before; the kustomizations a test appends are deleted after it."""
    clear_nfd_labels(cluster)
    applied: list[Path] = []
    yield applied
    for directory in applied:
        cluster.kubectl("delete", "-k", str(directory), "--ignore-not-found", "--wait=true")
    clear_nfd_labels(cluster)


def _labels_as_the_host(node_labels: NodeLabelWatch, mark: int) -> None:
    expected = host_labels()
    node_labels.wait_for(
        lambda labels: nfd_labels(labels) == expected, 60, "the host's labels", since=mark
    )


def test_oneshot_job_labels_the_node_and_completes(
    cluster: Cluster, clean: list[Path], node_labels: NodeLabelWatch
) -> None:
    overlay = OVERLAYS / "oneshot"
    mark = node_labels.mark()
    clean.append(overlay)
    apply_kustomization(cluster, overlay)
    complete = cluster.kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Complete", "job/nfd-worker", "--timeout=90s"
    )
    assert complete.returncode == 0, complete.stderr
    _labels_as_the_host(node_labels, mark)
    wait_running(cluster, MASTER, 30)  # the master keeps running (and the labels)


def test_tls_overlay_labels_the_node_over_mutual_tls(
    cluster: Cluster, clean: list[Path], node_labels: NodeLabelWatch
) -> None:
    overlay = OVERLAYS / "tls"
    with tempfile.TemporaryDirectory(prefix="nfd-certs.") as certs:
        subprocess.run(
            [str(REPO_ROOT / "hack" / "make-certs.sh"), "--out", certs, cluster.node],
            check=True,
            capture_output=True,
        )
        cluster.kubectl("create", "namespace", NAMESPACE, check=True)
        cluster.kubectl("apply", "-f", str(Path(certs) / "secrets.yaml"), check=True)
    mark = node_labels.mark()
    clean.append(overlay)
    apply_kustomization(cluster, overlay)
    wait_running(cluster, MASTER, 90)
    wait_running(cluster, WORKER, 90)
    _labels_as_the_host(node_labels, mark)
    master = json.loads(
        cluster.kubectl("get", "deployment", "-n", NAMESPACE, "nfd-master", "-o", "json").stdout
    )
    assert "--verify-node-name" in master["spec"]["template"]["spec"]["containers"][0]["args"]


def test_prometheus_monitors_select_endpoints_that_serve_metrics(
    cluster: Cluster, clean: list[Path], node_labels: NodeLabelWatch
) -> None:
    # The Prometheus Operator's CRDs (as tests/deploy uses them); no operator runs: what is
    # checked is that the monitors apply and that what they select serves the metrics.
    for crd in sorted(MONITORING_CRDS.glob("*.monitoring.coreos.com.yaml")):
        cluster.kubectl("apply", "-f", str(crd), check=True)
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "--timeout=30s",
        check=True,
    )
    overlay = OVERLAYS / "prometheus"
    mark = node_labels.mark()
    clean.append(overlay)
    apply_kustomization(cluster, overlay)
    wait_running(cluster, MASTER, 90)
    (worker,) = wait_running(cluster, WORKER, 90)
    _labels_as_the_host(node_labels, mark)

    monitor = json.loads(
        cluster.kubectl("get", "servicemonitor", "-n", NAMESPACE, "nfd-master", "-o", "json").stdout
    )
    selector = ",".join(f"{k}={v}" for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (service,) = json.loads(
        cluster.kubectl("get", "service", "-n", NAMESPACE, "-l", selector, "-o", "json").stdout
    )["items"]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "metrics")
    master_metrics = netns_get(cluster, f"http://{service['spec']['clusterIP']}:{port}/metrics")
    assert "nfd_master_node_updates_total" in master_metrics

    pod = json.loads(cluster.kubectl("get", "pod", "-n", NAMESPACE, worker, "-o", "json").stdout)
    worker_metrics = netns_get(cluster, f"http://{pod['status']['podIP']}:8081/metrics")
    assert "nfd_worker_feature_discovery_duration_seconds" in worker_metrics
