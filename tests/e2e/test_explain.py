"""kubectl nfd explain against a real nfd-master and nfd-worker on the test control plane:
the master's /explain endpoint directly, the command with --master-url, and the command
through the API server's service proxy (a selector-less Service whose Endpoints name this
machine's address, as a Pod IP would be named)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.master_harness import BIN, FNK, Harness, install_nfr_crd, make_harness, register
from tests.e2e.test_master_nodefeatures import create, install_nf_crd, nodefeature, set_labels
from tests.kube.controlplane import ControlPlane

RULE = """
apiVersion: nfd.k8s-sigs.io/v1alpha1
kind: NodeFeatureRule
metadata:
  name: {name}
spec:
  rules:
    - name: has-os
      labels:
        explain-os: "true"
      matchFeatures:
        - feature: system.osrelease
          matchExpressions:
            ID: {{op: Exists}}
    - name: plan9-only
      labels:
        explain-plan9: "true"
      matchFeatures:
        - feature: system.osrelease
          matchExpressions:
            ID: {{op: In, value: [plan9]}}
"""


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(control_plane, tmp_path)


def host_address() -> str:
    """An address of this machine that is not loopback (the API server refuses to proxy
    to loopback endpoints)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.250", 9))  # no packet is sent
        return str(s.getsockname()[0])


def explain_cmd(*args: str) -> list[str]:
    return [sys.executable, str(BIN / "kubectl-nfd"), "explain", *args]


def test_explain_direct_and_through_the_service_proxy(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    install_nfr_crd(harness.plane)
    node = register(harness, "explain")
    master, port = harness.master("--enable-gpu-marking")
    metrics = master.metrics_port  # type: ignore[attr-defined]
    features = tmp_path / "features"
    features.mkdir()
    (features / "team").write_text("explain-team=blue\n")
    harness.worker(node, "gpu-datacenter", f"127.0.0.1:{port}", features)
    name = f"explain-{node}"
    harness.plane.kubectl("apply", "-f", "-", input=RULE.format(name=name), check=True)
    try:
        harness.wait_labels(node, lambda lb: f"{FNK}/explain-os" in lb, "rule label")

        # The endpoint itself.
        url = f"http://127.0.0.1:{metrics}/explain/{node}?label=explain-plan9"
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.load(resp)
        labels = {e["name"]: e for e in doc["labels"]}
        assert labels[f"{FNK}/explain-os"]["nodeFeatureRule"] == name
        assert labels[f"{FNK}/explain-os"]["rule"] == "has-os"
        assert labels[f"{FNK}/explain-team"]["source"] == "local"
        gpu = labels["nvidia.com/gpu.present"]
        assert gpu["origin"] == "gpu-marking" and gpu["value"] == "true"
        assert doc["gpuMarking"] == {"enabled": True, "hardware": True}
        named = [e for e in labels.values() if e["origin"] == "worker" and "feature" in e]
        assert named, labels
        for e in named:
            assert e["name"] == f"{FNK}/{e['source']}-{e['feature']}"
        (miss,) = doc["label"]["rulesThatDidNotMatch"]
        assert miss["rule"] == "plan9-only" and "ID {op: In, value: [plan9]}" in miss["failed"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/explain/nobody", timeout=10)
        assert err.value.code == 404

        # The command, straight to the master; piped, so JSON.
        direct = subprocess.run(
            explain_cmd(node, "--master-url", f"http://127.0.0.1:{metrics}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert direct.returncode == 0, direct.stderr
        assert {e["name"] for e in json.loads(direct.stdout)["labels"]} == set(labels)

        # Through the API server's service proxy, as an operator outside the cluster.
        expose(harness.plane, namespace, node, metrics)
        proxied = subprocess.run(
            explain_cmd(
                node,
                "explain-plan9",
                "-n",
                namespace,
                f"--kubeconfig={harness.plane.kubeconfig}",
                "-o",
                "yaml",
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proxied.returncode == 0, proxied.stderr
        assert "plan9-only" in proxied.stdout and "rulesThatDidNotMatch" in proxied.stdout

        missing = subprocess.run(
            explain_cmd("nobody", "-n", namespace, f"--kubeconfig={harness.plane.kubeconfig}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 1
        assert "no state for node nobody" in missing.stderr
    finally:
        harness.plane.kubectl("delete", "nodefeaturerule", name, check=True)


# The API server proxies only to an endpoint that is a Pod with that IP: a Pod object stands
# for the master process, bound to the test's Node, with this machine's address as its IP.
POD = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: default}
---
apiVersion: v1
kind: Pod
metadata: {name: nfd-master-0}
spec:
  automountServiceAccountToken: false
  containers: [{name: nfd-master, image: example.invalid/nfd-master}]
"""
SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: nfd-master
spec:
  ports:
    - name: metrics
      port: 8081
      targetPort: {port}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: nfd-master
subsets:
  - addresses:
      - ip: {address}
        nodeName: {node}
        targetRef: {{kind: Pod, name: nfd-master-0, namespace: {namespace}}}
    ports:
      - name: metrics
        port: {port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: nfd-master-1
  labels: {{kubernetes.io/service-name: nfd-master}}
addressType: IPv4
endpoints:
  - addresses: ["{address}"]
    nodeName: {node}
    targetRef: {{kind: Pod, name: nfd-master-0, namespace: {namespace}}}
    conditions: {{ready: true, serving: true}}
ports:
  - name: metrics
    port: {port}
    protocol: TCP
"""


def expose(plane: ControlPlane, namespace: str, node: str, port: int) -> None:
    """A Service nfd-master:metrics in ``namespace`` whose endpoint is this process."""
    address = host_address()
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=POD, check=True)
    plane.bind_pod(namespace, "nfd-master-0", node)
    status = {"status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}}
    plane.kubectl(
        "patch",
        "-n",
        namespace,
        "pod",
        "nfd-master-0",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
        check=True,
    )
    manifest = SERVICE.format(address=address, port=port, node=node, namespace=namespace)
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest, check=True)


def test_a_standby_answers_503(harness: Harness) -> None:
    # Two masters under leader election: the one that does not lead says so.
    node = register(harness, "explain-ha")
    del node
    first, _ = harness.master("--enable-leader-election", "--namespace=default")
    second, _ = harness.master("--enable-leader-election", "--namespace=default", wait=False)
    codes = []
    for proc in (first, second):
        url = f"http://127.0.0.1:{proc.metrics_port}/explain/x"  # type: ignore[attr-defined]
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError as err:
                codes.append((err.code, err.read().decode()))
                break
            except OSError:
                import time

                time.sleep(0.1)
    assert codes[0][0] == 404  # the leader: no state for x
    assert codes[1][0] == 503 and "standby" in codes[1][1]


def test_explain_names_the_nodefeature_object_of_each_label(
    harness: Harness, namespace: str
) -> None:
    """A real master reading NodeFeature objects: a node with a gRPC worker, its own
    NodeFeature (as a NodeFeature-mode worker writes it) and GPU Feature Discovery's;
    /explain names the object each label came from, and the winner of a label all three
    gave, with what it overrode."""
    install_nfr_crd(harness.plane)
    install_nf_crd(harness.plane)
    node = register(harness, "explain-nf")
    master, port = harness.master(f"--namespace={namespace}", "--extra-label-ns=nvidia.com")
    metrics = master.metrics_port  # type: ignore[attr-defined]
    gfd = f"nvidia-features-for-{node}"
    create(
        harness.plane,
        nodefeature(namespace, node, node, {"explain-own": "1", "explain-shared": "own"}),
    )
    create(
        harness.plane,
        nodefeature(
            namespace,
            gfd,
            node,
            {"nvidia.com/gpu.product": "NVIDIA-H100", "explain-shared": "gfd"},
        ),
    )
    set_labels(port, node, {"explain-grpc": "1", "explain-shared": "grpc"})
    harness.wait_labels(
        node,
        lambda lb: lb.get(f"{FNK}/explain-shared") == "gfd" and f"{FNK}/explain-grpc" in lb,
        "merged labels",
    )
    url = f"http://127.0.0.1:{metrics}/explain/{node}?label=explain-shared"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc = json.load(resp)
    labels = {e["name"]: e for e in doc["labels"]}
    product = labels["nvidia.com/gpu.product"]
    assert (product["origin"], product["nodeFeature"]) == ("NodeFeature", f"{namespace}/{gfd}")
    own = labels[f"{FNK}/explain-own"]
    assert own["origin"] == "worker" and own["nodeFeature"] == f"{namespace}/{node}"
    assert "nodeFeature" not in labels[f"{FNK}/explain-grpc"]
    shared = doc["label"]
    assert shared["set"] is True and shared["value"] == "gfd"
    assert shared["origin"]["nodeFeature"] == f"{namespace}/{gfd}"
    assert shared["origin"]["overrides"] == [
        {"worker": "gRPC", "value": "grpc"},
        {"nodeFeature": f"{namespace}/{node}", "value": "own"},
    ]

    # The command prints it in words.
    out = subprocess.run(
        explain_cmd(
            node, "explain-shared", "--master-url", f"http://127.0.0.1:{metrics}", "-o", "table"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"origin: spec.labels of NodeFeature {namespace}/{gfd}" in out.stdout
    assert f"    NodeFeature {namespace}/{node}: 'own'\n" in out.stdout
