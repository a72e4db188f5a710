"""deploy/overlays/default applied unchanged on the real node: pods, labels, reactions, restarts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.cluster.deployment import (
    DEFAULT_OVERLAY,
    FEATURES_D,
    MASTER,
    NAMESPACE,
    SOURCE_D,
    WORKER,
    apply_kustomization,
    clear_nfd_labels,
    host_labels,
    is_nfd_label,
    nfd_labels,
    wait_running,
)
from tests.cluster.nodewatch import NodeLabelWatch
from tests.kube.cluster import Cluster

PREFIX = "feature.node.kubernetes.io/"


@pytest.fixture(scope="module")
def deployed(cluster: Cluster) -> Iterator[dict[str, float]]:
    """The default overlay applied once for this module (and removed after it)."""
    clear_nfd_labels(cluster)
    watch = NodeLabelWatch(cluster.kubeconfig, cluster.node)
    watch.start()
    mark = watch.mark()
    applied = apply_kustomization(cluster, DEFAULT_OVERLAY)
    expected = host_labels()
    try:
        labelled = watch.wait_for(
            lambda labels: nfd_labels(labels) == expected,
            90,
            "the host's labels on the Node",
            since=mark,
        )
    finally:
        watch.stop()
    yield {"applied": applied, "labelled": labelled, "expected_count": len(expected)}
    cluster.kubectl("delete", "-k", str(DEFAULT_OVERLAY), "--ignore-not-found", "--wait=true")


def test_apply_labels_the_node_as_nfd_export_within_60s(
    cluster: Cluster, deployed: dict[str, float]
) -> None:
    wait_running(cluster, MASTER, 30)
    wait_running(cluster, WORKER, 30)
    available = cluster.kubectl(
        "wait",
        "-n",
        NAMESPACE,
        "--for=condition=Available",
        "deployment/nfd-master",
        "--timeout=30s",
    )
    assert available.returncode == 0, available.stderr
    elapsed = deployed["labelled"] - deployed["applied"]
    print(f"apply -> {deployed['expected_count']:.0f} labels on the Node: {elapsed:.1f}s")
    assert elapsed <= 60, f"the labels took {elapsed:.1f}s after apply"
    assert deployed["expected_count"] > 10  # a real host has cpu, kernel, system, ... labels


def _written_then_removed(
    node_labels: NodeLabelWatch,
    write: Callable[[], object],
    remove: Callable[[], object],
    key: str,
    value: str,
) -> tuple[float, float]:
    mark = node_labels.mark()
    written = time.monotonic()
    write()
    appeared = node_labels.wait_for(
        lambda labels: labels.get(key) == value, 10, f"{key}={value}", mark
    )
    mark = node_labels.mark()
    removed = time.monotonic()
    remove()
    gone = node_labels.wait_for(lambda labels: key not in labels, 10, f"{key} to go", mark)
    return appeared - written, gone - removed


def test_features_d_file_becomes_a_label_within_2s(
    deployed: dict[str, float], node_labels: NodeLabelWatch
) -> None:
    path = FEATURES_D / "cluster-test"
    key = PREFIX + "cluster-test-file"
    try:
        shown, gone = _written_then_removed(
            node_labels,
            lambda: path.write_text("cluster-test-file=yes\n"),
            lambda: path.unlink(),
            key,
            "yes",
        )
    finally:
        path.unlink(missing_ok=True)
    print(f"features.d file -> label {shown:.2f}s, removed -> label gone {gone:.2f}s")
    assert shown <= 2.0 and gone <= 2.0


def test_source_d_hook_becomes_a_label_within_2s(
    deployed: dict[str, float], node_labels: NodeLabelWatch
) -> None:
    path = SOURCE_D / "cluster-test-hook"
    key = PREFIX + "cluster-test-hook"

    def write() -> None:
        staged = path.with_name(".cluster-test-hook.tmp")
        staged.write_text("#!/bin/sh\necho cluster-test-hook=ran\n")
        staged.chmod(0o755)
        staged.rename(path)  # appears complete and executable in one step

    try:
        shown, gone = _written_then_removed(node_labels, write, lambda: path.unlink(), key, "ran")
    finally:
        path.unlink(missing_ok=True)
    print(f"source.d hook -> label {shown:.2f}s, removed -> label gone {gone:.2f}s")
    assert shown <= 2.0 and gone <= 2.0


def _replace_pod(cluster: Cluster, selector: str) -> tuple[str, str, float]:
    (old,) = wait_running(cluster, selector, 60)
    began = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, old, "--wait=true", check=True)
    deleted = time.monotonic() - began
    (new,) = wait_running(cluster, selector, 90)
    return old, new, deleted


@pytest.mark.parametrize("component", ["master", "worker"])
def test_pod_deleted_new_pod_takes_over_without_label_removals(
    cluster: Cluster, deployed: dict[str, float], node_labels: NodeLabelWatch, component: str
) -> None:
    selector = MASTER if component == "master" else WORKER
    before = nfd_labels(node_labels.current())
    mark = node_labels.mark()
    old, new, deleted = _replace_pod(cluster, selector)
    assert new != old
    # The new pod has published once the labels are unchanged after it is Ready.
    time.sleep(5)
    print(f"{component} pod deletion took {deleted:.1f}s")
    assert node_labels.removals(mark, is_nfd_label) == []
    assert nfd_labels(node_labels.current()) == before
    assert deleted < 10, f"deleting the {component} pod took {deleted:.1f}s (grace period?)"


def test_kubelet_restart_keeps_labels(
    cluster: Cluster, deployed: dict[str, float], node_labels: NodeLabelWatch
) -> None:
    before = nfd_labels(node_labels.current())
    mark = node_labels.mark()
    cluster.stop_component("kubelet")
    cluster.start_component("kubelet")
    cluster.wait_node_ready(120)
    wait_running(cluster, MASTER, 60)
    wait_running(cluster, WORKER, 60)
    time.sleep(5)
    assert node_labels.removals(mark, is_nfd_label) == []
    assert nfd_labels(node_labels.current()) == before
