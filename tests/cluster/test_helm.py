"""deploy/helm/nfd installed with helm on the real node: the same labels as the default overlay;
helm uninstall leaves none of the chart's objects, and `nfd-master --prune` (docs/protocol.md)
then removes the labels, which outlive the installation as upstream's do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cluster.deployment import (
    MASTER,
    NAMESPACE,
    WORKER,
    clear_nfd_labels,
    host_labels,
    nfd_labels,
    wait_running,
)
from tests.cluster.nodewatch import NodeLabelWatch
from tests.kube.cluster import Cluster
from tests.kube.controlplane import REPO_ROOT, wait_until

CHART = REPO_ROOT / "deploy" / "helm" / "nfd"
RELEASE = "nfd-cluster-test"
# Everything the chart templates, namespaced or not (CRDs are helm's exception: kept).
KINDS = "all,configmaps,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings"


def _helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    helm = subprocess.run(
        [str(REPO_ROOT / "hack" / "helm.sh"), "path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    result = subprocess.run(
        [helm, f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
    return result


def _release_objects(cluster: Cluster) -> list[str]:
    result = cluster.kubectl(
        "get", KINDS, "-A", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "name", check=True
    )
    return result.stdout.split()


def test_helm_install_labels_as_the_overlay_and_uninstall_leaves_nothing(
    cluster: Cluster, node_labels: NodeLabelWatch
) -> None:
    clear_nfd_labels(cluster)
    mark = node_labels.mark()
    expected = host_labels()
    _helm(cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace")
    try:
        wait_running(cluster, MASTER, 90)
        wait_running(cluster, WORKER, 90)
        node_labels.wait_for(
            lambda labels: nfd_labels(labels) == expected, 60, "the host's labels", since=mark
        )
    finally:
        _helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout=120s")
    wait_until(lambda: not _release_objects(cluster), 60, "the release's objects to go")
    assert nfd_labels(node_labels.current()) == expected  # labels outlive the release

    nfd_master = Path(sys.executable).with_name("nfd-master")
    subprocess.run(
        [str(nfd_master), "--prune", f"--kubeconfig={cluster.kubeconfig}"],
        check=True,
        timeout=120,
        capture_output=True,
    )
    node = json.loads(cluster.kubectl("get", "node", cluster.node, "-o", "json").stdout)
    assert nfd_labels(node["metadata"]["labels"]) == {}
    assert not [a for a in node["metadata"].get("annotations", {}) if "nfd.node" in a]
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--ignore-not-found")
