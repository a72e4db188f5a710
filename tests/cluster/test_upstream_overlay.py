"""Upstream v0.19.0's own deployment/overlays/default (from its Go module), with only the
image replaced by ours, on the real node: nfd-master, nfd-worker and nfd-gc Running and
Ready, the worker's NodeFeature object written, and the Node labelled through it, as with
upstream's image. Everything applied is deleted at the end (CRDs included)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster.deployment import (
    NAMESPACE,
    apply_test_overlay,
    clear_nfd_labels,
    delete_manifests,
    host_labels,
    nfd_labels,
    wait_running,
)
from tests.cluster.nodewatch import NodeLabelWatch
from tests.kube.cluster import Cluster, Images
from tests.kube.controlplane import wait_until

UPSTREAM_IMAGE = "registry.k8s.io/nfd/node-feature-discovery"
FNK = "feature.node.kubernetes.io/"


def our_image_overlay(directory: Path, image: str) -> Path:
    """A kustomization over a copy of upstream's deployment/ that changes only the image."""
    from tests.compat.upstream import current_deployment

    tree = directory / "deployment"
    shutil.copytree(current_deployment(), tree)
    name, _, tag = image.rpartition(":")
    overlay = tree / "overlays" / "our-image"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../default"],
                "images": [{"name": UPSTREAM_IMAGE, "newName": name, "newTag": tag}],
            }
        )
    )
    return overlay


@pytest.fixture
def upstream_applied(cluster: Cluster, images: Images, tmp_path: Path) -> Iterator[str]:
    clear_nfd_labels(cluster)
    overlay = our_image_overlay(tmp_path, images.nfd_name)
    rendered = ""
    try:
        rendered = apply_test_overlay(cluster, overlay)
        yield rendered
    finally:
        if rendered:
            delete_manifests(cluster, rendered, timeout=180)
        clear_nfd_labels(cluster)


def test_upstream_default_overlay_with_our_image_labels_the_node(
    cluster: Cluster, images: Images, upstream_applied: str, node_labels: NodeLabelWatch
) -> None:
    rendered = upstream_applied
    used = {
        c["image"]
        for doc in yaml.safe_load_all(rendered)
        if doc and doc.get("kind") in ("Deployment", "DaemonSet")
        for c in doc["spec"]["template"]["spec"]["containers"]
    }
    assert used == {images.nfd_name}, used
    # Upstream's labels (app: nfd-master etc.), not ours.
    wait_running(cluster, "app=nfd-master", 120)
    wait_running(cluster, "app=nfd-worker", 120)
    wait_running(cluster, "app=nfd-gc", 120)

    # The worker publishes its NodeFeature (no gRPC in v0.19's layout) and the master
    # labels the Node from it: the host's labels, as `nfd export labels` gives them.
    def object_written() -> bool:
        got = cluster.kubectl(
            "get", "nodefeature", "-n", NAMESPACE, cluster.node, "-o", "json", check=False
        )
        return got.returncode == 0 and bool(json.loads(got.stdout)["spec"].get("labels"))

    wait_until(object_written, 90, f"NodeFeature {NAMESPACE}/{cluster.node}")
    expected = host_labels()
    node_labels.wait_for(
        lambda lb: any(k.startswith(FNK + "kernel-version.") for k in lb), 90, "kernel labels"
    )
    got = nfd_labels(node_labels.current())
    # The sources upstream's mounts cover give what they give on the host itself (the
    # cpu and kernel sources through the container's own /proc, as upstream's worker).
    prefixes = tuple(FNK + p for p in ("cpu-", "kernel-version.", "system-os_release."))
    want = {k: v for k, v in expected.items() if k.startswith(prefixes)}
    have = {k: v for k, v in got.items() if k.startswith(prefixes)}
    assert any(k.startswith(FNK + "cpu-cpuid.") for k in want), want
    assert have == want
    print(f"labels: {len(got)} on the Node, {len(expected)} from `nfd export labels` on the host")
    print("only on the host:", sorted(set(expected) - set(got)))
    print("only on the Node:", sorted(set(got) - set(expected)))
