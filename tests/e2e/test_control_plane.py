"""Prove the control-plane harness: the apiserver answers, Nodes behave like kubelet-registered
ones, optimistic concurrency works, CRDs install, and the DaemonSet controller places pods."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.kube.controlplane import ControlPlane, find_binaries, wait_until

K8S_VERSION = "v1.37.2"  # keep in step with hack/control-plane.sh


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture
def node_names(control_plane: ControlPlane) -> Iterator[list[str]]:
    """Names of Nodes a test registers; they are deleted afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        control_plane.delete_node(name, wait=False)


def test_apiserver_answers(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json", check=True).stdout)
    assert version["serverVersion"]["gitVersion"] == K8S_VERSION
    assert control_plane.server.startswith("https://127.0.0.1:")
    ready = control_plane.kubectl("get", "--raw", "/readyz")
    assert ready.returncode == 0 and ready.stdout.strip() == "ok", ready.stderr
    assert control_plane.core.read_namespace("default").metadata.name == "default"


def test_node_is_registered_like_a_kubelet_and_labelled_with_kubectl(
    control_plane: ControlPlane, node_names: list[str]
) -> None:
    name = unique("node")
    node_names.append(name)
    control_plane.register_node(name, labels={"example.com/pool": "a"}, capacity={"pods": "10"})

    control_plane.kubectl("label", "node", name, "feature.node.kubernetes.io/test=true", check=True)

    node = control_plane.core.read_node(name)
    assert node.metadata.labels["feature.node.kubernetes.io/test"] == "true"
    assert node.metadata.labels["example.com/pool"] == "a"
    assert node.metadata.labels["kubernetes.io/hostname"] == name
    assert node.status.capacity == {"pods": "10"} == node.status.allocatable
    assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]
    # TaintNodesByCondition is disabled, so the node is not tainted not-ready.
    assert not node.spec.taints

    control_plane.delete_node(name)
    assert control_plane.kubectl("get", "node", name).returncode != 0


def test_json_patch_test_op_rejects_a_stale_resource_version(
    control_plane: ControlPlane, node_names: list[str]
) -> None:
    name = unique("node")
    node_names.append(name)
    stale = control_plane.register_node(name).metadata.resource_version
    control_plane.kubectl("label", "node", name, "step=1", check=True)

    def patch_guarded_by(resource_version: str, value: str) -> Any:
        return control_plane.core.patch_node(
            name,
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
                {"op": "add", "path": "/metadata/labels/step", "value": value},
            ],
        )

    with pytest.raises(ApiException) as rejected:
        patch_guarded_by(stale, "2")
    # A failed `test` op is 422 Invalid ("the server rejected our request…").
    assert rejected.value.status == 422, rejected.value
    # A stale resourceVersion carried in a merge patch is the classic 409 Conflict instead.
    with pytest.raises(ApiException) as conflict:
        control_plane.core.patch_node(
            name,
            {"metadata": {"resourceVersion": stale, "labels": {"step": "2"}}},
            _content_type="application/merge-patch+json",
        )
    assert conflict.value.status == 409, conflict.value
    assert control_plane.core.read_node(name).metadata.labels["step"] == "1"

    current = control_plane.core.read_node(name).metadata.resource_version
    patched = patch_guarded_by(current, "3")
    assert patched.metadata.labels["step"] == "3"


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.nfd.test"},
    "spec": {
        "group": "example.nfd.test",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer"}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_crd_can_be_installed_and_used(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(CRD), check=True)
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.nfd.test",
        "--timeout=30s",
        check=True,
    )
    widget = {
        "apiVersion": "example.nfd.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    # Server-side dry run exercises the same path `kubectl apply --dry-run=server` users take.
    dry = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(widget))
    assert dry.returncode == 0, dry.stderr
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(widget), check=True)
    got = control_plane.kubectl("get", "widget", "w1", "-n", namespace, "-o", "json", check=True)
    assert json.loads(got.stdout)["spec"] == {"size": 3}

    widget["spec"] = {"size": "three"}
    invalid = control_plane.kubectl("apply", "-f", "-", input=json.dumps(widget))
    assert invalid.returncode != 0 and "size" in invalid.stderr


def daemonset(name: str, namespace: str, node_selector: dict[str, str]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": node_selector,
                    "containers": [{"name": "main", "image": "registry.invalid/pause:1"}],
                },
            },
        },
    }


def target_node(pod: Any) -> str:
    """The node the DaemonSet controller meant a pod for: it pins pods with a required
    node-affinity term on metadata.name rather than setting spec.nodeName."""
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    (field,) = terms.node_selector_terms[0].match_fields
    assert field.key == "metadata.name" and field.operator == "In"
    (node,) = field.values
    return str(node)


def test_daemonset_gets_pods_only_on_matching_nodes(
    controller_manager: ControlPlane, namespace: str, node_names: list[str]
) -> None:
    plane = controller_manager
    selector = {"nfd.test/ds": "yes"}
    matching = [unique("match"), unique("match")]
    other = unique("other")
    node_names.extend([*matching, other])
    for name in matching:
        plane.register_node(name, labels=selector)
    plane.register_node(other)

    ds_name = unique("ds")
    plane.kubectl(
        "apply", "-f", "-", input=json.dumps(daemonset(ds_name, namespace, selector)), check=True
    )

    def pods_by_node(expected: int) -> dict[str, Any] | None:
        pods = plane.core.list_namespaced_pod(namespace, label_selector=f"app={ds_name}").items
        return {target_node(p): p for p in pods} if len(pods) == expected else None

    pods = wait_until(lambda: pods_by_node(2), 60, "2 DaemonSet pods")
    assert sorted(pods) == sorted(matching)
    # Without kube-scheduler nobody binds the pods: nodeName stays empty until a test binds them.
    assert all(not pod.spec.node_name for pod in pods.values())
    plane.bind_pod(namespace, pods[matching[0]].metadata.name, matching[0])
    bound = plane.core.read_namespaced_pod(pods[matching[0]].metadata.name, namespace)
    assert bound.spec.node_name == matching[0]

    # Labelling the third node makes it eligible; the controller reacts to Node updates.
    plane.kubectl("label", "node", other, "nfd.test/ds=yes", check=True)
    pods = wait_until(lambda: pods_by_node(3), 60, "a third DaemonSet pod")
    assert other in pods


def test_stopping_leaves_no_process_behind() -> None:
    plane = ControlPlane.start_new()
    pids = list(plane.pids().values())
    assert len(pids) == 2  # etcd and kube-apiserver
    workdir = plane.workdir
    plane.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not workdir.exists()


def test_components_restart_with_their_data() -> None:
    """Fault tests stop and restart etcd and the apiserver; state and kubeconfig survive."""
    plane = ControlPlane.start_new()
    try:
        plane.register_node("survivor")
        for name in ("kube-apiserver", "etcd"):
            plane.restart_component(name, down_seconds=0.5)
            # The apiserver retries etcd on its own; wait until it serves reads again.
            wait_until(
                lambda: plane.kubectl("get", "node", "survivor").returncode == 0,
                60,
                f"the node to be readable after restarting {name}",
            )
    finally:
        plane.stop()


def test_binaries_are_found() -> None:
    binaries = find_binaries()
    assert binaries.kube_apiserver.name.endswith(K8S_VERSION)
