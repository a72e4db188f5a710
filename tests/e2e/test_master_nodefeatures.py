"""NodeFeature objects (nfd.k8s-sigs.io/v1alpha1) as nfd-master input, on the real control
plane with a real nfd-master process: GPU Feature Discovery's object becomes Node labels
within a second of being created, changed or deleted; objects of one node merge in
upstream v0.19's order, after the node's gRPC worker; objects of deleted Nodes are
garbage collected."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from nfd._proto import labeler_pb2, labeler_pb2_grpc
from tests.e2e.master_harness import (
    FNK,
    REPO,
    Harness,
    install_nfr_crd,
    make_harness,
    metric_value,
    metrics_text,
    register,
    unique,
)
from tests.kube.controlplane import ControlPlane, wait_until

NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeatures"
CRD_FILE = REPO / "deploy" / "base" / "crd-nodefeatures.yaml"


def nodefeature_crd() -> dict[str, Any]:
    """The NodeFeature CRD deploy/ ships (schema-identical to upstream v0.19.0's)."""
    for doc in yaml.safe_load_all(CRD_FILE.read_text()):
        if doc and doc.get("metadata", {}).get("name") == f"{PLURAL}.{GROUP}":
            return dict(doc)
    raise AssertionError(f"no NodeFeature CRD in {CRD_FILE}")


def install_nf_crd(plane: ControlPlane) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps(nodefeature_crd()), check=True)
    plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s", check=True
    )
    wait_until(
        lambda: plane.kubectl("get", PLURAL, "-A").returncode == 0, 30, "nodefeatures served"
    )


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    install_nfr_crd(control_plane)
    install_nf_crd(control_plane)
    yield from make_harness(control_plane, tmp_path)


def custom(plane: ControlPlane) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(plane.api_client)


def nodefeature(
    namespace: str,
    name: str,
    node: str | None,
    labels: dict[str, str],
    features: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if node is not None:
        meta["labels"] = {NODE_NAME_LABEL: node}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NodeFeature",
        "metadata": meta,
        "spec": {"labels": labels, "features": features or {}},
    }


def create(plane: ControlPlane, obj: dict[str, Any]) -> None:
    ns = obj["metadata"]["namespace"]
    custom(plane).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj)


def patch_labels(plane: ControlPlane, ns: str, name: str, labels: dict[str, Any]) -> None:
    custom(plane).patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name, {"spec": {"labels": labels}}
    )


def delete(plane: ControlPlane, ns: str, name: str) -> None:
    custom(plane).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def exists(plane: ControlPlane, ns: str, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        custom(plane).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


def timed(h: Harness, node: str, pred: Callable[[dict[str, str]], bool], what: str) -> float:
    """Seconds until ``pred`` holds for the node's labels (polled every 20 ms)."""
    began = time.monotonic()
    deadline = began + 15
    while time.monotonic() < deadline:
        if pred(h.node_labels(node)):
            return time.monotonic() - began
        time.sleep(0.02)
    raise AssertionError(f"{what} on {node}: not within 15 s\n{h.node_labels(node)}\n{h.logs()}")


GFD_LABELS = {
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.memory": "81559",
    "nvidia.com/gpu.count": "8",
    "nvidia.com/gpu.family": "hopper",
    "nvidia.com/cuda.driver.major": "550",
    "nvidia.com/mig.capable": "true",
    "nvidia.com/mig.strategy": "single",
}


def test_gfd_nodefeature_becomes_labels_within_a_second(harness: Harness, namespace: str) -> None:
    plane = harness.plane
    node = register(harness, "gfd")
    name = f"nvidia-features-for-{node}"
    # As the GPU Operator configures NFD: nvidia.com is an extra label namespace.
    master, _ = harness.master(f"--namespace={namespace}", "--extra-label-ns=nvidia.com")

    create(plane, nodefeature(namespace, name, node, GFD_LABELS))
    took = timed(
        harness,
        node,
        lambda lb: all(lb.get(k) == v for k, v in GFD_LABELS.items()),
        "GFD labels",
    )
    print(f"NodeFeature labels: {took * 1000:.0f} ms")
    assert took < 1.0, f"labels took {took:.2f} s"
    owned = harness.node(node).metadata.annotations["nfd.node.kubernetes.io/feature-labels"]
    assert "nvidia.com/gpu.product" in owned.split(",")

    # Changed: the new value, and a label the object no longer has goes.
    changed = {
        **GFD_LABELS,
        "nvidia.com/gpu.product": "NVIDIA-H200",
        "nvidia.com/mig.strategy": None,
    }
    patch_labels(plane, namespace, name, changed)
    took = timed(
        harness,
        node,
        lambda lb: (
            lb.get("nvidia.com/gpu.product") == "NVIDIA-H200"
            and "nvidia.com/mig.strategy" not in lb
        ),
        "changed GFD labels",
    )
    print(f"NodeFeature change: {took * 1000:.0f} ms")
    assert took < 1.0, f"change took {took:.2f} s"

    delete(plane, namespace, name)
    took = timed(
        harness, node, lambda lb: not any(k.startswith("nvidia.com/") for k in lb), "removal"
    )
    print(f"NodeFeature removal: {took * 1000:.0f} ms")
    assert took < 1.0, f"removal took {took:.2f} s"
    ann = harness.node(node).metadata.annotations or {}
    assert "nvidia.com/gpu.product" not in ann.get("nfd.node.kubernetes.io/feature-labels", "")
    assert metric_value(metrics_text(master), "nfd_master_node_updates_total") >= 3


def test_nvidia_labels_and_the_label_namespace_policy(harness: Harness, namespace: str) -> None:
    """Upstream v0.19 denies only kubernetes.io namespaces by default, so nvidia.com labels
    pass as they are; --deny-label-ns refuses them and --extra-label-ns (as the GPU
    Operator configures NFD) allows them again, also over a denial."""
    plane = harness.plane
    node = register(harness, "gfd-ns")
    labels = {"nvidia.com/gpu.product": "NVIDIA-A100", "gfd-test": "1"}
    create(plane, nodefeature(namespace, f"nvidia-features-for-{node}", node, labels))
    master, _ = harness.master(f"--namespace={namespace}", "--deny-label-ns=nvidia.com")
    # The unprefixed label gets the default namespace; nvidia.com is denied.
    got = harness.wait_labels(node, lambda lb: f"{FNK}/gfd-test" in lb, "default-ns label")
    assert "nvidia.com/gpu.product" not in got
    wait_until(lambda: "nvidia.com/gpu.product" in master.text(), 10, "the rejection logged")
    master.stop()
    master, _ = harness.master(
        f"--namespace={namespace}", "--deny-label-ns=nvidia.com", "--extra-label-ns=nvidia.com"
    )
    got = harness.wait_labels(node, lambda lb: "nvidia.com/gpu.product" in lb, "nvidia label")
    assert got["nvidia.com/gpu.product"] == "NVIDIA-A100"
    assert got[f"{FNK}/gfd-test"] == "1"
    master.stop()
    harness.master(f"--namespace={namespace}")
    got = harness.wait_labels(node, lambda lb: "nvidia.com/gpu.product" in lb, "default policy")
    assert got["nvidia.com/gpu.product"] == "NVIDIA-A100"


def set_labels(port: int, node: str, labels: dict[str, str]) -> None:
    req = labeler_pb2.SetLabelsRequest(node_name=node, labels=labels)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        labeler_pb2_grpc.LabelerStub(channel).SetLabels(req, timeout=30)


def test_objects_merge_in_upstream_order_after_the_grpc_worker(
    harness: Harness, namespace: str
) -> None:
    plane = harness.plane
    other = unique("vendor")
    plane.kubectl("create", "namespace", other, check=True)
    node = register(harness, "merge")
    _, port = harness.master(f"--namespace={namespace}")
    set_labels(port, node, {f"{FNK}/grpc-only": "1", f"{FNK}/shared": "grpc", "own": "grpc"})
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/shared") == "grpc", "gRPC labels")
    # The node's own object (master namespace, named after the node) sorts first; a
    # third-party object after it wins the conflict; unprefixed names are prefixed first.
    create(plane, nodefeature(namespace, node, node, {"shared": "own", "own": "own"}))
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/own") == "own", "own object")
    create(plane, nodefeature(other, "a-vendor", node, {f"{FNK}/shared": "vendor"}))
    got = harness.wait_labels(
        node, lambda lb: lb.get(f"{FNK}/shared") == "vendor", "third-party object wins"
    )
    assert got[f"{FNK}/grpc-only"] == "1"
    assert got[f"{FNK}/own"] == "own"
    # Deleting the winner brings back the next one; deleting all leaves the worker's.
    delete(plane, other, "a-vendor")
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/shared") == "own", "own object again")
    delete(plane, namespace, node)
    got = harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/shared") == "grpc", "worker again")
    assert got[f"{FNK}/own"] == "grpc" and got[f"{FNK}/grpc-only"] == "1"


def test_nodefeature_features_feed_rules(harness: Harness, namespace: str) -> None:
    plane = harness.plane
    node = register(harness, "nfr")
    rule = unique("nf-rule")
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
                "kind": "NodeFeatureRule",
                "metadata": {"name": rule},
                "spec": {
                    "rules": [
                        {
                            "name": "from-nodefeature",
                            "labels": {"nf-rule-hit": "true"},
                            "matchFeatures": [
                                {
                                    "feature": "vendor.gpu",
                                    "matchExpressions": {"model": {"op": "In", "value": ["h100"]}},
                                }
                            ],
                        }
                    ]
                },
            }
        ),
        check=True,
    )
    try:
        harness.master(f"--namespace={namespace}")
        features = {"attributes": {"vendor.gpu": {"elements": {"model": "h100"}}}}
        create(plane, nodefeature(namespace, f"vendor-{node}", node, {}, features))
        harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/nf-rule-hit") == "true", "rule label")
        delete(plane, namespace, f"vendor-{node}")
        harness.wait_labels(node, lambda lb: f"{FNK}/nf-rule-hit" not in lb, "rule label gone")
    finally:
        plane.kubectl("delete", "nodefeaturerule", rule)


def test_objects_of_deleted_nodes_are_garbage_collected(harness: Harness, namespace: str) -> None:
    plane = harness.plane
    # An object of a Node that never existed, there before the master: the first pass.
    ghost = unique("ghost")
    create(plane, nodefeature(namespace, f"nvidia-features-for-{ghost}", ghost, {"x": "1"}))
    node = register(harness, "gc")
    create(plane, nodefeature(namespace, f"nvidia-features-for-{node}", node, {"gc": "1"}))
    master, _ = harness.master(f"--namespace={namespace}")
    wait_until(
        lambda: not exists(plane, namespace, f"nvidia-features-for-{ghost}"),
        15,
        "the ghost node's NodeFeature deleted",
    )
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/gc") == "1", "labels")
    assert exists(plane, namespace, f"nvidia-features-for-{node}")
    # The Node goes: its object follows.
    plane.delete_node(node)
    wait_until(
        lambda: not exists(plane, namespace, f"nvidia-features-for-{node}"),
        15,
        "the deleted node's NodeFeature deleted",
    )
    text = metrics_text(master)
    assert metric_value(text, "nfd_gc_objects_deleted_total") >= 2


def test_no_publish_collects_nothing(harness: Harness, namespace: str) -> None:
    """--no-publish is read-only: it never deletes objects either."""
    plane = harness.plane
    ghost = unique("ghost-ro")
    create(plane, nodefeature(namespace, f"nf-{ghost}", ghost, {"x": "1"}))
    harness.master(f"--namespace={namespace}", "--no-publish")
    time.sleep(4)
    assert exists(plane, namespace, f"nf-{ghost}")
    delete(plane, namespace, f"nf-{ghost}")


def test_watcher_lists_in_pages_then_resumes_its_watch(
    control_plane: ControlPlane, namespace: str
) -> None:
    import threading

    from nfd.master.nodefeatures import NodeFeatureStore, NodeFeatureWatcher

    install_nf_crd(control_plane)
    node = unique("pages")
    for i in range(5):
        create(control_plane, nodefeature(namespace, f"nf-{i}", node, {f"l{i}": "1"}))
    changes: list[set[str]] = []
    syncs: list[tuple[set[str], bool]] = []
    store = NodeFeatureStore(namespace)
    watcher = NodeFeatureWatcher(
        control_plane.api_client,
        store,
        changes.append,
        lambda nodes, first: syncs.append((nodes, first)),
        page_size=2,
        watch_seconds=1,
    )
    calls: list[dict[str, Any]] = []
    real = watcher.api.list_cluster_custom_object

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    watcher.api.list_cluster_custom_object = counting
    watcher.start()
    try:
        wait_until(lambda: store.synced.is_set() or None, 30, "the first list")
        pages = [c for c in calls if not c.get("watch")]
        assert [c.get("limit") for c in pages] == [2, 2, 2]
        assert syncs == [({node}, True)]
        merged = store.merged(node)
        assert merged is not None and len(merged.labels) == 5
        threading.Event().wait(2.5)  # several 1 s watches end and resume meanwhile
        delete(control_plane, namespace, "nf-0")
        wait_until(lambda: len(store.merged(node).labels) == 4 or None, 10, "the delete")  # type: ignore[union-attr]
        patch_labels(control_plane, namespace, "nf-1", {"l1": "2"})
        wait_until(
            lambda: store.merged(node).labels.get(f"{FNK}/l1") == "2" or None,  # type: ignore[union-attr]
            10,
            "the change",
        )
        assert watcher.lists == 1 and len(syncs) == 1
        assert len([c for c in calls if c.get("watch")]) >= 3
        assert {node} in changes
    finally:
        watcher.stop()


def test_feature_gate_off_means_no_nodefeature_input(harness: Harness, namespace: str) -> None:
    """-feature-gates=NodeFeatureAPI=false (gRPC workers only, as v0.16 allowed): objects are
    neither read nor garbage collected."""
    plane = harness.plane
    node = register(harness, "gate")
    ghost = unique("ghost-gate")
    create(plane, nodefeature(namespace, f"nf-{node}", node, {"gated": "1"}))
    create(plane, nodefeature(namespace, f"nf-{ghost}", ghost, {"x": "1"}))
    _, port = harness.master(f"--namespace={namespace}", "--feature-gates=NodeFeatureAPI=false")
    set_labels(port, node, {f"{FNK}/grpc": "1"})
    got = harness.wait_labels(node, lambda lb: f"{FNK}/grpc" in lb, "gRPC labels")
    time.sleep(3)
    got = harness.node_labels(node)
    assert f"{FNK}/gated" not in got
    assert exists(plane, namespace, f"nf-{ghost}")
    delete(plane, namespace, f"nf-{ghost}")
    delete(plane, namespace, f"nf-{node}")


def test_gpu_marking_from_an_upstream_workers_nodefeature(harness: Harness, namespace: str) -> None:
    """An upstream v0.19 worker's object (in the NFD namespace, named after the node) with an
    NVIDIA PCI device: GPU marking works on this input as on a gRPC update."""
    plane = harness.plane
    node = register(harness, "nf-gpu")
    harness.master(f"--namespace={namespace}")
    features = {
        "instances": {
            "pci.device": {
                "elements": [{"attributes": {"vendor": "10de", "class": "0302", "device": "2330"}}]
            }
        }
    }
    labels = {"pci-10de.present": "true"}
    create(plane, nodefeature(namespace, node, node, labels, features))
    got = harness.wait_labels(node, lambda lb: "nvidia.com/gpu.present" in lb, "GPU marking")
    assert got["nvidia.com/gpu.present"] == "true"
    assert got[f"{FNK}/pci-10de.present"] == "true"
    delete(plane, namespace, node)
    # The GPU gone: gpu.present flipped to "false", never deleted (docs/gpu.md).
    got = harness.wait_labels(
        node, lambda lb: lb.get("nvidia.com/gpu.present") == "false", "marking flipped"
    )
    assert f"{FNK}/pci-10de.present" not in got


def test_upstream_v019_worker_to_our_master(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    """Upstream v0.19.0's own nfd-worker binary (built from its Go module) publishes this
    machine's NodeFeature; our master turns it into exactly the labels that worker
    discovered (each auto-prefixed, as upstream's master does)."""
    from tests.compat import upstream

    node = register(harness, "nf-upstream")
    harness.master(f"--namespace={namespace}")
    config = tmp_path / "nfd-worker.conf"
    config.write_text("# defaults only\n")
    env = {**os.environ, "NODE_NAME": node, "KUBERNETES_NAMESPACE": namespace}
    worker = subprocess.run(
        [
            str(upstream.current_binary("nfd-worker")),
            "-oneshot",
            f"-config={config}",
            f"-kubeconfig={harness.plane.kubeconfig}",
            "-port=0",
            "-v=1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    discovered = upstream.parse_worker_labels(worker.stderr + worker.stdout)
    assert discovered, worker.stderr[-3000:]
    obj = custom(harness.plane).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, node
    )
    assert obj["metadata"]["labels"][NODE_NAME_LABEL] == node
    want = {k if "/" in k else f"{FNK}/{k}": v for k, v in discovered.items()}
    got = harness.wait_labels(
        node, lambda lb: all(lb.get(k) == v for k, v in want.items()), "the upstream labels"
    )
    assert {k: v for k, v in got.items() if k in want} == want
