"""NodeFeatureGroup status.nodes (feature gate NodeFeatureGroupAPI) on the real control
plane with a real nfd-master process: a group matching one of two nodes shows it within a
second, follows the nodes' features (NodeFeature objects and a gRPC worker's) and a node's
deletion, and nothing is written with the gate off (its default, as upstream v0.19)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from nfd._proto import labeler_pb2, labeler_pb2_grpc, v1alpha1_pb2
from tests.e2e.master_harness import (
    FNK,
    REPO,
    Harness,
    install_nfr_crd,
    make_harness,
    metric_value,
    metrics_text,
    register,
)
from tests.e2e.test_master_nodefeatures import create, custom, install_nf_crd, nodefeature
from tests.kube.controlplane import ControlPlane, wait_until

GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeaturegroups"
CRD_FILE = REPO / "deploy" / "base" / "crd-nodefeaturegroups.yaml"


def install_nfg_crd(plane: ControlPlane) -> None:
    docs = [d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d]
    plane.kubectl("apply", "-f", "-", input=json.dumps(docs[0]), check=True)
    plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s", check=True
    )
    wait_until(lambda: plane.kubectl("get", PLURAL, "-A").returncode == 0, 30, "groups served")


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    install_nfr_crd(control_plane)
    install_nf_crd(control_plane)
    install_nfg_crd(control_plane)
    yield from make_harness(control_plane, tmp_path)


def kernel(major: str) -> dict[str, Any]:
    return {"attributes": {"kernel.version": {"elements": {"major": major}}}}


def group(namespace: str, name: str, major: str) -> dict[str, Any]:
    expr = {"major": {"op": "In", "value": [major]}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "NodeFeatureGroup",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "featureGroupRules": [
                {
                    "name": f"kernel-{major}",
                    "matchFeatures": [{"feature": "kernel.version", "matchExpressions": expr}],
                }
            ]
        },
    }


def get_group(plane: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom(plane).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name
    )
    return obj


def status_nodes(plane: ControlPlane, ns: str, name: str) -> list[dict[str, str]] | None:
    status = get_group(plane, ns, name).get("status")
    return None if status is None else status.get("nodes")


def timed(h: Harness, ns: str, name: str, want: list[str], what: str) -> float:
    """Seconds until the group's status.nodes is ``want`` (polled every 20 ms)."""
    expected = [{"name": n} for n in want]
    began = time.monotonic()
    while time.monotonic() < began + 15:
        if status_nodes(h.plane, ns, name) == expected:
            return time.monotonic() - began
        time.sleep(0.02)
    got = status_nodes(h.plane, ns, name)
    raise AssertionError(f"{what}: {got} != {expected} within 15 s\n{h.logs()}")


def set_kernel(plane: ControlPlane, ns: str, name: str, major: str) -> None:
    custom(plane).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "nodefeatures", name, {"spec": {"features": kernel(major)}}
    )


def test_group_status_follows_the_nodes_features(harness: Harness, namespace: str) -> None:
    plane = harness.plane
    # Names sort as a < b: status.nodes is in node-name order.
    a, b = register(harness, "grp-a"), register(harness, "grp-b")
    create(plane, nodefeature(namespace, a, a, {}, kernel("6")))
    create(plane, nodefeature(namespace, b, b, {}, kernel("5")))
    master, _ = harness.master(
        f"--namespace={namespace}", "--feature-gates=NodeFeatureGroupAPI=true"
    )
    custom(plane).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, group(namespace, "kernel6", "6")
    )
    took = timed(harness, namespace, "kernel6", [a], "a new group")
    print(f"new group: {took * 1000:.0f} ms")
    assert took < 1.0, f"a new group's status took {took:.2f} s"
    # A group in another namespace is not the master's (upstream reads its own only).
    custom(plane).create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, group("default", f"other-{namespace}", "6")
    )

    set_kernel(plane, namespace, b, "6")
    took = timed(harness, namespace, "kernel6", [a, b], "node b's features changed")
    print(f"node joins: {took * 1000:.0f} ms")
    assert took < 1.0, f"a joining node took {took:.2f} s"
    set_kernel(plane, namespace, a, "5")
    took = timed(harness, namespace, "kernel6", [b], "node a's features changed")
    print(f"node leaves: {took * 1000:.0f} ms")
    assert took < 1.0, f"a leaving node took {took:.2f} s"

    # The group's spec changes: every node is evaluated again.
    custom(plane).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "kernel6", {"spec": group(namespace, "", "5")["spec"]}
    )
    took = timed(harness, namespace, "kernel6", [a], "the group's rules changed")
    assert took < 1.0, f"a changed group took {took:.2f} s"

    # A gRPC worker's features count as well (merged before the node's objects).
    c = register(harness, "grp-c")
    port = int(master.text().split("serving gRPC on port ")[1].split()[0])
    feats = v1alpha1_pb2.Features()
    feats.vattributes["kernel.version"].elements["major"] = "5"
    req = labeler_pb2.SetLabelsRequest(node_name=c, labels={"grpc": "1"}, features=feats)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = labeler_pb2_grpc.LabelerStub(channel)

        def accepted() -> bool:
            # The master's Node watch may not have seen the new Node yet: a real worker
            # retries an update refused as for an unknown node, and so does this one.
            try:
                stub.SetLabels(req, timeout=30)
                return True
            except grpc.RpcError as err:
                if "does not exist" not in (err.details() or ""):
                    raise
                return False

        wait_until(accepted, 10, "the master to know the new Node", interval=0.05)
    took = timed(harness, namespace, "kernel6", [a, c], "a gRPC worker's node")
    assert took < 1.0, f"a gRPC worker's node took {took:.2f} s"

    # A deleted Node leaves the group.
    plane.delete_node(a)
    harness.nodes.remove(a)
    took = timed(harness, namespace, "kernel6", [c], "node a deleted")
    print(f"node deleted: {took * 1000:.0f} ms")
    assert took < 1.0, f"a deleted node took {took:.2f} s"

    # Only changes are written: nothing more happens while nothing changes.
    writes = metric_value(
        metrics_text(master), "nfd_master_node_feature_group_update_requests_total"
    )
    version = get_group(plane, namespace, "kernel6")["metadata"]["resourceVersion"]
    set_kernel(plane, namespace, b, "6")  # b stays out (the group wants 5 now)
    harness.wait_labels(c, lambda lb: f"{FNK}/grpc" in lb, "gRPC label")
    time.sleep(1.5)
    assert get_group(plane, namespace, "kernel6")["metadata"]["resourceVersion"] == version
    after = metric_value(
        metrics_text(master), "nfd_master_node_feature_group_update_requests_total"
    )
    assert after == writes == 6  # one write per change above
    assert status_nodes(plane, "default", f"other-{namespace}") is None
    custom(plane).delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, f"other-{namespace}"
    )


def test_gate_off_writes_nothing(harness: Harness, namespace: str) -> None:
    plane = harness.plane
    node = register(harness, "grp-off")
    create(plane, nodefeature(namespace, node, node, {"sync": "1"}, kernel("6")))
    custom(plane).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, group(namespace, "kernel6", "6")
    )
    master, _ = harness.master(f"--namespace={namespace}")  # the gate's default: off
    harness.wait_labels(node, lambda lb: f"{FNK}/sync" in lb, "the NodeFeature's label")
    set_kernel(plane, namespace, node, "6")
    time.sleep(2.0)
    assert status_nodes(plane, namespace, "kernel6") is None
    assert "NodeFeatureGroup" not in master.text()


def test_same_status_as_upstream_v019_master(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    """Upstream v0.19.0's own nfd-master (gate on) and ours, one after the other on the
    same NodeFeature objects and groups: the same status on every group."""
    from tests.compat.upstream import current_binary, register_kubelet_node
    from tests.kube.controlplane import free_port

    plane = harness.plane
    a, b = f"{namespace}-a", f"{namespace}-b"
    for node, major in ((a, "6"), (b, "5")):
        register_kubelet_node(plane, node)
        harness.nodes.append(node)
        # Upstream names the member from the node's system.name/nodename (its worker's).
        feats = kernel(major)
        feats["attributes"]["system.name"] = {"elements": {"nodename": node}}
        create(plane, nodefeature(namespace, node, node, {}, feats))

    def rule(name: str, major: str) -> dict[str, Any]:
        expr = {"major": {"op": "In", "value": [major]}}
        return {
            "name": name,
            "matchFeatures": [{"feature": "kernel.version", "matchExpressions": expr}],
        }

    groups = {
        "kernel6": [rule("six", "6")],
        "any": [
            {
                "name": "any",
                "matchAny": [{"matchFeatures": rule("x", m)["matchFeatures"]} for m in ("9", "5")],
            }
        ],
        "both": [{**rule("six", "6"), "vars": {"six": "true"}}, rule("five", "5")],
        "none": [rule("seven", "7")],
    }

    def create_groups() -> None:
        for name, rules in groups.items():
            obj = group(namespace, name, "0")
            obj["spec"]["featureGroupRules"] = rules
            custom(plane).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, obj)

    def statuses() -> dict[str, Any]:
        return {name: get_group(plane, namespace, name).get("status") for name in groups}

    def settled() -> dict[str, Any] | None:
        got = statuses()
        return got if all(got[n] is not None for n in ("kernel6", "any", "both")) else None

    create_groups()
    config = tmp_path / "nfd-master.conf"
    config.write_text("# defaults only\n")
    upstream = harness.spawn(
        "upstream-v0.19-master",
        [
            str(current_binary("nfd-master")),
            f"-kubeconfig={plane.kubeconfig}",
            f"-config={config}",
            f"-port={free_port()}",
            "-feature-gates=NodeFeatureGroupAPI=true",
        ],
        env={"NODE_NAME": a, "KUBERNETES_NAMESPACE": namespace},
    )
    theirs = wait_until(settled, 60, "upstream's group statuses", interval=0.2)
    time.sleep(2.0)  # its one-second batches: nothing more comes
    assert statuses() == theirs
    upstream.stop()
    assert theirs == {
        "kernel6": {"nodes": [{"name": a}]},
        "any": {"nodes": [{"name": b}]},
        "both": {"nodes": [{"name": a}, {"name": b}]},
        "none": None,
    }, upstream.text()[-3000:]

    for name in groups:
        custom(plane).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    create_groups()
    harness.master(f"--namespace={namespace}", "--feature-gates=NodeFeatureGroupAPI=true")
    ours = wait_until(settled, 30, "our group statuses", interval=0.1)
    time.sleep(1.0)
    assert statuses() == ours == theirs


def test_only_the_leader_writes_group_status(harness: Harness, namespace: str) -> None:
    """Two replicas under leader election: the standby writes nothing; once the leader
    dies it takes over and writes what changed."""
    import signal

    plane = harness.plane
    a, b = register(harness, "grp-ha-a"), register(harness, "grp-ha-b")
    create(plane, nodefeature(namespace, a, a, {}, kernel("6")))
    create(plane, nodefeature(namespace, b, b, {}, kernel("5")))
    lease = (
        f"--namespace={namespace}",
        "--feature-gates=NodeFeatureGroupAPI=true",
        "--enable-leader-election",
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=0.5s",
    )
    leader, _ = harness.master(*lease)
    standby, _ = harness.master(*lease, wait=False)
    wait_until(lambda: "serving gRPC" in standby.text(), 60, "the standby to start")
    custom(plane).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, group(namespace, "kernel6", "6")
    )
    timed(harness, namespace, "kernel6", [a], "the leader's write")
    set_kernel(plane, namespace, b, "6")
    timed(harness, namespace, "kernel6", [a, b], "the leader's second write")
    assert "status.nodes" in leader.text()
    assert "status.nodes" not in standby.text()

    leader.stop(signal.SIGKILL)
    set_kernel(plane, namespace, a, "5")
    timed(harness, namespace, "kernel6", [b], "the new leader's write")
    assert "became leader" in standby.text() and "status.nodes" in standby.text()
