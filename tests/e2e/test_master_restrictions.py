"""Upstream v0.19's restrictions.*, the DisableAutoPrefix feature gate and dynamic
``@domain.feature.element`` values in NodeFeature labels, on the real control plane
with a real nfd-master process: what each one does to the Node's labels, annotations
and extended resources, and that the master only ever removes what it owns."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.master_harness import FNK, Harness, install_nfr_crd, make_harness, register, unique
from tests.e2e.test_master_nodefeatures import create, delete, install_nf_crd, nodefeature
from tests.kube.controlplane import ControlPlane, wait_until

ANN = "nfd.node.kubernetes.io"


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    install_nfr_crd(control_plane)
    install_nf_crd(control_plane)
    yield from make_harness(control_plane, tmp_path)


def options(**restrictions: Any) -> str:
    return "--options=" + json.dumps({"restrictions": restrictions})


def annotations(h: Harness, node: str) -> dict[str, str]:
    return dict(h.node(node).metadata.annotations or {})


def capacity(h: Harness, node: str) -> dict[str, str]:
    return {k: str(v) for k, v in (h.node(node).status.capacity or {}).items()}


def wait_for(h: Harness, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    try:
        wait_until(check, timeout, what, interval=0.3)
    except TimeoutError as err:
        raise AssertionError(f"{err}\n{h.logs()}") from None


def features_for(node: str, **attrs: dict[str, str]) -> dict[str, Any]:
    elements = {"e2e.restrict": {"elements": {"node": node}}}
    elements.update({k.replace("_", "."): {"elements": v} for k, v in attrs.items()})
    return {"attributes": elements}


def rule(name: str, node: str) -> str:
    """A NodeFeatureRule matching only ``node`` (by its NodeFeature's e2e.restrict.node)."""
    return json.dumps(
        {
            "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
            "kind": "NodeFeatureRule",
            "metadata": {"name": name},
            "spec": {
                "rules": [
                    {
                        "name": "restrict",
                        "labels": {"rule-label": "1"},
                        "annotations": {"rule-note": "x"},
                        "extendedResources": {"restrict-er": "3"},
                        "matchFeatures": [
                            {
                                "feature": "e2e.restrict",
                                "matchExpressions": {"node": {"op": "In", "value": [node]}},
                            }
                        ],
                    }
                ]
            },
        }
    )


def test_disable_labels_annotations_and_extended_resources(
    harness: Harness, namespace: str
) -> None:
    plane, h = harness.plane, harness
    node = register(h, "disable")
    plane.core.patch_node(node, {"metadata": {"labels": {"team": "a"}}})
    create(plane, nodefeature(namespace, node, node, {"nf-label": "1"}, features_for(node)))
    name = unique("restrict")
    plane.kubectl("apply", "-f", "-", input=rule(name, node), check=True)
    try:
        master, _ = h.master(f"--namespace={namespace}")
        h.wait_labels(node, lambda lb: f"{FNK}/rule-label" in lb and f"{FNK}/nf-label" in lb, "all")
        wait_for(h, "ER", lambda: capacity(h, node).get(f"{FNK}/restrict-er") == "3")
        assert annotations(h, node)[f"{FNK}/rule-note"] == "x"
        master.stop()

        # disableLabels + disableAnnotations: NFD's labels (NodeFeature and rule alike) and
        # feature annotations go; the ER and labels NFD does not own stay.
        master, _ = h.master(
            f"--namespace={namespace}", options(disableLabels=True, disableAnnotations=True)
        )
        got = h.wait_labels(node, lambda lb: not any(k.startswith(FNK) for k in lb), "no labels")
        assert got["team"] == "a"
        wait_for(h, "no feature annotation", lambda: f"{FNK}/rule-note" not in annotations(h, node))
        ann = annotations(h, node)
        assert f"{ANN}/feature-labels" not in ann and f"{ANN}/feature-annotations" not in ann
        assert ann[f"{ANN}/extended-resources"] == "restrict-er"
        assert capacity(h, node)[f"{FNK}/restrict-er"] == "3"
        assert "accepted but not enforced" not in master.text()
        master.stop()

        # disableExtendedResources: the ER goes, the labels come back.
        h.master(f"--namespace={namespace}", options(disableExtendedResources=True))
        h.wait_labels(node, lambda lb: f"{FNK}/rule-label" in lb, "labels back")
        wait_for(h, "no ER", lambda: f"{FNK}/restrict-er" not in capacity(h, node))
        assert f"{ANN}/extended-resources" not in annotations(h, node)
        assert annotations(h, node)[f"{FNK}/rule-note"] == "x"
    finally:
        plane.kubectl("delete", "nodefeaturerule", name, "--ignore-not-found")


def test_allow_overwrite_false_leaves_labels_nfd_does_not_own(
    harness: Harness, namespace: str
) -> None:
    plane, h = harness.plane, harness
    node = register(h, "overwrite")
    plane.core.patch_node(node, {"metadata": {"labels": {f"{FNK}/theirs": "admin"}}})
    create(plane, nodefeature(namespace, node, node, {"theirs": "nfd", "mine": "1"}))
    h.master(f"--namespace={namespace}", options(allowOverwrite=False))
    h.wait_labels(node, lambda lb: lb.get(f"{FNK}/mine") == "1", "own label")
    assert h.node_labels(node)[f"{FNK}/theirs"] == "admin"
    assert annotations(h, node)[f"{ANN}/feature-labels"] == "mine"
    # What NFD owns it still updates; removal leaves the foreign label.
    from tests.e2e.test_master_nodefeatures import patch_labels

    patch_labels(plane, namespace, node, {"theirs": "nfd", "mine": "2"})
    h.wait_labels(node, lambda lb: lb.get(f"{FNK}/mine") == "2", "own label updated")
    assert h.node_labels(node)[f"{FNK}/theirs"] == "admin"
    delete(plane, namespace, node)
    got = h.wait_labels(node, lambda lb: f"{FNK}/mine" not in lb, "own label removed")
    assert got[f"{FNK}/theirs"] == "admin"


def test_node_feature_namespace_selector(harness: Harness, namespace: str) -> None:
    """Only objects in selected namespaces count, the master's own namespace included
    (not selected: its objects give nothing); a namespace entering or leaving the
    selection is acted on at once."""
    plane, h = harness.plane, harness
    node = register(h, "nssel")
    key = unique("nfd-e2e-sel")
    vendor_a, vendor_b = unique("vendor-a"), unique("vendor-b")
    for ns in (vendor_a, vendor_b):
        plane.kubectl("create", "namespace", ns, check=True)
    plane.kubectl("label", "namespace", vendor_a, f"{key}=yes", check=True)
    create(plane, nodefeature(namespace, node, node, {"own": "1"}))
    create(plane, nodefeature(vendor_a, f"a-{node}", node, {"a": "1"}))
    create(plane, nodefeature(vendor_b, f"b-{node}", node, {"b": "1"}))
    selector = {"matchExpressions": [{"key": key, "operator": "In", "values": ["yes"]}]}
    master, _ = h.master(f"--namespace={namespace}", options(nodeFeatureNamespaceSelector=selector))
    got = h.wait_labels(node, lambda lb: f"{FNK}/a" in lb, "selected namespace's label")
    assert f"{FNK}/b" not in got and f"{FNK}/own" not in got
    plane.kubectl("label", "namespace", vendor_b, f"{key}=yes", check=True)
    h.wait_labels(node, lambda lb: f"{FNK}/b" in lb, "newly selected namespace's label")
    plane.kubectl("label", "namespace", vendor_a, f"{key}-", check=True)
    got = h.wait_labels(node, lambda lb: f"{FNK}/a" not in lb, "deselected namespace's label")
    assert got[f"{FNK}/b"] == "1" and f"{FNK}/own" not in got
    assert "selects 1 namespaces" in master.text()


def test_node_feature_namespace_selector_bad_value_is_a_clear_error(
    harness: Harness, namespace: str
) -> None:
    selector = {"matchLabels": {"bad key!": "x"}}
    proc, _ = harness.master(
        f"--namespace={namespace}", options(nodeFeatureNamespaceSelector=selector), wait=False
    )
    assert proc.popen.wait(60) == 2
    assert "nodeFeatureNamespaceSelector.matchLabels: key 'bad key!' is not a valid label name" in (
        proc.text()
    )


def test_disable_auto_prefix_keeps_unprefixed_names(harness: Harness, namespace: str) -> None:
    plane, h = harness.plane, harness
    node = register(h, "noprefix")
    plane.core.patch_node(node, {"metadata": {"labels": {f"{FNK}/foo": "admin"}}})
    create(plane, nodefeature(namespace, node, node, {"foo": "bar", f"{FNK}/p": "1"}))
    master, _ = h.master(f"--namespace={namespace}", "-feature-gates=DisableAutoPrefix=true")
    got = h.wait_labels(node, lambda lb: lb.get("foo") == "bar", "unprefixed label")
    assert got[f"{FNK}/foo"] == "admin" and got[f"{FNK}/p"] == "1"
    assert annotations(h, node)[f"{ANN}/feature-labels"] == "/foo,p"
    assert "DisableAutoPrefix" not in master.text()
    delete(plane, namespace, node)
    got = h.wait_labels(node, lambda lb: "foo" not in lb, "unprefixed label removed")
    # The label of the same name in the default namespace is not NFD's: it stays.
    assert got[f"{FNK}/foo"] == "admin" and f"{FNK}/p" not in got


def test_dynamic_values_in_nodefeature_labels(harness: Harness, namespace: str) -> None:
    plane, h = harness.plane, harness
    node = register(h, "dynamic")
    labels = {"driver": "@vendor.driver.version", "broken": "@vendor.driver.nope", "ok": "1"}
    feats = features_for(node, vendor_driver={"version": "550.54"})
    create(plane, nodefeature(namespace, f"vendor-{node}", node, labels, feats))
    master, _ = h.master(f"--namespace={namespace}")
    got = h.wait_labels(node, lambda lb: f"{FNK}/driver" in lb, "dynamic label")
    assert got[f"{FNK}/driver"] == "550.54" and got[f"{FNK}/ok"] == "1"
    assert f"{FNK}/broken" not in got
    wait_until(
        lambda: "element nope not found on feature vendor.driver" in master.text(), 10, "logged"
    )


def test_resync_clears_a_node_whose_objects_vanished_while_no_master_ran(
    harness: Harness, namespace: str
) -> None:
    """Upstream's periodic resync: a Node whose NodeFeature objects all went while no
    master ran loses NFD's labels at the second resync that finds it without input, not
    at start and not at the first; labels NFD does not own stay. Once a gRPC worker has
    sent to the master, that pass is off: a node labelled over gRPC keeps its labels."""
    from tests.e2e.test_master_nodefeatures import set_labels

    plane, h = harness.plane, harness
    node, grpc_node = register(h, "vanished"), register(h, "grpc-kept")
    create(plane, nodefeature(namespace, node, node, {"gone": "1"}))
    master, port = h.master(f"--namespace={namespace}")
    h.wait_labels(node, lambda lb: f"{FNK}/gone" in lb, "NodeFeature label")
    set_labels(port, grpc_node, {f"{FNK}/from-grpc": "1"})
    h.wait_labels(grpc_node, lambda lb: f"{FNK}/from-grpc" in lb, "gRPC label")
    master.stop()
    delete(plane, namespace, node)
    plane.core.patch_node(node, {"metadata": {"labels": {"team": "a"}}})

    # With a gRPC worker seen: several resyncs, nothing cleared anywhere.
    master, port = h.master(f"--namespace={namespace}", "--resync-period=1s")
    set_labels(port, register(h, "other"), {f"{FNK}/x": "1"})  # any gRPC update
    wait_until(lambda: master.text().count("periodic resync") >= 4, 30, "four resyncs")
    assert f"{FNK}/gone" in h.node_labels(node)
    assert f"{FNK}/from-grpc" in h.node_labels(grpc_node)
    master.stop()

    # A NodeFeature-only master: kept at start and at the first resync, cleared after.
    master, _ = h.master(f"--namespace={namespace}", "--resync-period=3s")
    assert f"{FNK}/gone" in h.node_labels(node)
    wait_until(lambda: master.text().count("periodic resync") >= 1, 30, "first resync")
    assert f"{FNK}/gone" in h.node_labels(node)
    got = h.wait_labels(node, lambda lb: f"{FNK}/gone" not in lb, "cleared", timeout=30)
    assert got["team"] == "a"
    assert f"{ANN}/feature-labels" not in annotations(h, node)
    assert "nodes without any input: clearing what NFD owns" in master.text()
