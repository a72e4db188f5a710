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
from tests.kube.controlplane import ControlPlane, wait_until

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


def local_tree(root: Path) -> Path:
    """features.d with two files and source.d with one hook, all setting origin-shared
    (the hook wins: hooks run after the files); returns features.d."""
    files, hooks = root / "features.d", root / "source.d"
    files.mkdir(parents=True)
    hooks.mkdir()
    (files / "10-team").write_text("origin-team=blue\norigin-shared=file10\n")
    (files / "20-site").write_text("origin-shared=file20\n")
    hook = hooks / "rack.sh"
    hook.write_text("#!/bin/sh\necho origin-rack=r7\necho origin-shared=hook\n")
    hook.chmod(0o755)
    return files


def explain_doc(metrics: int, node: str, label: str) -> dict:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{metrics}/explain/{node}?label={label}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        doc: dict = json.load(resp)  # type: ignore[type-arg]
    return doc


def test_explain_names_the_features_d_file_and_the_hook_of_local_labels(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    """Real workers, one over gRPC and one writing its NodeFeature object to the API
    server, and a real master: /explain and kubectl nfd explain name the features.d file
    or source.d hook of every local label, and for one that two files and a hook set, the
    hook that won and the files it overrode; while the worker's NodeFeature object keeps
    upstream's local feature sets and no other."""
    from nfd import origins
    from tests.e2e.test_worker_nodefeature import nf_worker, wait_nf

    install_nf_crd(harness.plane)
    grpc_node = register(harness, "origin-grpc")
    nf_node = register(harness, "origin-nf")
    master, port = harness.master(f"--namespace={namespace}")
    metrics = master.metrics_port  # type: ignore[attr-defined]
    grpc_files = local_tree(tmp_path / "grpc")
    harness.worker(
        grpc_node,
        "host-full",
        f"127.0.0.1:{port}",
        grpc_files,
        f"--hooks-dir={grpc_files.parent / 'source.d'}",
    )
    nf_worker(harness, nf_node, namespace, local_tree(tmp_path / "nf"))
    for node in (grpc_node, nf_node):
        harness.wait_labels(
            node,
            lambda lb: lb.get(f"{FNK}/origin-shared") == "hook" and f"{FNK}/origin-rack" in lb,
            "local labels",
        )

    # Upstream's shape of the NodeFeature object: the two local feature sets, and the
    # origins only in our annotation.
    obj = wait_nf(harness, namespace, nf_node, lambda o: True, "the worker's object")
    local_sets = {k for k in obj["spec"]["features"]["attributes"] if k.startswith("local.")}
    assert local_sets == {"local.label", "local.feature"}
    kept, omitted = origins.decode(obj["metadata"]["annotations"][origins.ANNOTATION])
    assert kept["origin-rack"] == ("hook:rack.sh",) and omitted == 0

    for node in (grpc_node, nf_node):
        doc = explain_doc(metrics, node, "origin-shared")
        labels = {e["name"]: e for e in doc["labels"]}
        team = labels[f"{FNK}/origin-team"]
        assert (team["source"], team["file"]) == ("local", "10-team"), team
        assert labels[f"{FNK}/origin-rack"]["hook"] == "rack.sh"
        shared = doc["label"]["origin"]
        assert shared["hook"] == "rack.sh"
        assert shared["alsoSetBy"] == [{"file": "10-team"}, {"file": "20-site"}]
        assert "detail" not in team
    assert labels[f"{FNK}/origin-team"]["nodeFeature"] == f"{namespace}/{nf_node}"

    # The command, as a table and as JSON.
    url = f"http://127.0.0.1:{metrics}"
    table = subprocess.run(
        explain_cmd(nf_node, "--master-url", url, "-o", "table"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    # Piped, so 80 columns: long label names are clipped, never the origin.
    assert all(len(ln) <= 80 for ln in table.stdout.splitlines() if ln.startswith("origin-"))
    rows = {ln.split()[0]: ln.split()[2:] for ln in table.stdout.splitlines() if ln.strip()}
    assert rows["origin-team"] == ["features.d/10-team"]
    assert rows["origin-rack"] == ["source.d/rack.sh"]
    assert rows["origin-shared"] == ["source.d/rack.sh", "(+2)"]
    one = subprocess.run(
        explain_cmd(grpc_node, "origin-shared", "--master-url", url, "-o", "table"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "origin: nfd-worker's local source: source.d hook rack.sh" in one.stdout
    assert "    features.d/10-team\n    features.d/20-site\n" in one.stdout
    as_json = subprocess.run(
        explain_cmd(grpc_node, "--master-url", url, "-o", "json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    entries = {e["name"]: e for e in json.loads(as_json.stdout)["labels"]}
    assert entries[f"{FNK}/origin-team"]["file"] == "10-team"

    # A label that moves to another file, its value unchanged: the worker sends the new
    # origin (its labels and features are the same) and explain follows.
    (grpc_files / "10-team").write_text("origin-shared=file10\n")
    (grpc_files / "30-moved").write_text("origin-team=blue\n")

    def moved() -> bool:
        e = {x["name"]: x for x in explain_doc(metrics, grpc_node, "origin-team")["labels"]}
        return e[f"{FNK}/origin-team"].get("file") == "30-moved"

    wait_until(moved, 60, "origin-team's new file in explain", interval=0.3)
