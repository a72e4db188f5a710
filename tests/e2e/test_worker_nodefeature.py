"""nfd-worker in NodeFeature mode (upstream v0.19's only mode) on the real control plane:
a real nfd-worker process writes this node's NodeFeature object, with deploy/base's CRD
applied, the way upstream v0.19's worker does; and our nfd-master turns it into Node
labels."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nfd import __version__
from tests.e2e.master_harness import (
    BIN,
    FIXTURES,
    FNK,
    REPO,
    Harness,
    Proc,
    install_nfr_crd,
    make_harness,
    register,
    unique,
)
from tests.e2e.test_master_nodefeatures import GROUP, PLURAL, VERSION, custom, install_nf_crd
from tests.kube.controlplane import ControlPlane, ControlPlaneError, wait_until

NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
VERSION_ANNOTATION = "nfd.node.kubernetes.io/worker.version"
POD_UID_ANNOTATION = "nfd.node.kubernetes.io/worker.pod.uid"


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    """This module's own etcd + kube-apiserver: its Pods stand in for a DaemonSet's, and
    the DaemonSet controller other modules start on the session's plane deletes them."""
    try:
        plane = ControlPlane.start_new()
    except ControlPlaneError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def harness(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Harness]:
    install_nfr_crd(control_plane)
    install_nf_crd(control_plane)
    yield from make_harness(control_plane, tmp_path)


def nf_worker(
    h: Harness,
    node: str,
    namespace: str,
    features_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    kubeconfig: Path | None = None,
) -> Proc:
    """nfd-worker with upstream v0.19's command line: no --server, so NodeFeature mode."""
    return h.spawn(
        f"worker-{node}",
        [
            str(BIN / "nfd-worker"),
            f"--kubeconfig={kubeconfig or h.plane.kubeconfig}",
            f"--host-prefix={FIXTURES / 'host-full'}",
            f"--features-dir={features_dir}",
            f"--hooks-dir={features_dir.parent / 'source.d'}",
            "--port=0",
            "--options",
            '{"core": {"sleepInterval": "1s"}}',
            *extra,
        ],
        env={"NODE_NAME": node, "KUBERNETES_NAMESPACE": namespace, **(env or {})},
    )


def get_nf(h: Harness, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = custom(h.plane).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return obj
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def wait_nf(
    h: Harness,
    namespace: str,
    name: str,
    pred: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_nf(h, namespace, name)
        return obj if obj is not None and pred(obj) else None

    try:
        return wait_until(check, timeout, what, interval=0.05)
    except TimeoutError as err:
        raise AssertionError(f"{err}\n{get_nf(h, namespace, name)}\n{h.logs()}") from None


def nodefeature_writes(h: Harness) -> float:
    """The apiserver's count of create/update/patch requests on nodefeatures."""
    text = h.plane.kubectl("get", "--raw", "/metrics", check=True).stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="nodefeatures"' in line:
            if any(f'verb="{v}"' in line for v in ("POST", "PUT", "PATCH", "APPLY")):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_worker_publishes_its_nodefeature_and_writes_only_on_change(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    node = unique("nfw")
    fd = tmp_path / "features.d"
    fd.mkdir()
    worker = nf_worker(harness, node, namespace, fd)
    obj = wait_nf(harness, namespace, node, lambda o: bool(o["spec"].get("labels")), "object")

    meta = obj["metadata"]
    assert (meta["name"], meta["namespace"]) == (node, namespace)
    assert meta["labels"] == {NODE_NAME_LABEL: node}
    assert meta["annotations"] == {VERSION_ANNOTATION: __version__}  # no POD_UID set
    assert not meta.get("ownerReferences")  # default pod,ds: no POD_NAME/POD_UID here
    labels = obj["spec"]["labels"]
    assert labels[f"{FNK}/cpu-cpuid.AVX2"] == "true"
    features = obj["spec"]["features"]
    assert "AVX2" in features["flags"]["cpu.cpuid"]["elements"]
    assert features["attributes"]["kernel.version"]["elements"]["major"]
    assert features["instances"]["pci.device"]["elements"]

    # A features.d file: spec.labels follows within about a second.
    start = time.monotonic()
    (fd / "e2e").write_text("e2e-local=yes\n")
    wait_nf(harness, namespace, node, lambda o: o["spec"]["labels"].get("e2e-local") == "yes", "f")
    took = time.monotonic() - start
    assert took < 1.5, f"features.d change took {took:.2f} s to reach spec.labels"
    print(f"features.d -> spec.labels: {took:.3f} s")
    assert get_nf(harness, namespace, node)["spec"]["features"]["attributes"]["local.feature"][
        "elements"
    ] == {"e2e-local": "yes"}

    # Unchanged rediscoveries (sleepInterval 1s) write nothing.
    before = get_nf(harness, namespace, node)
    writes = nodefeature_writes(harness)
    assert writes >= 2  # the count is real: this worker's create and its update
    time.sleep(4)
    after = get_nf(harness, namespace, node)
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert nodefeature_writes(harness) == writes
    assert worker.alive(), harness.logs()


def test_no_publish_features_keeps_labels_and_drops_features(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    fd = tmp_path / "features.d"
    fd.mkdir()
    everything = unique("nfw-all")
    nf_worker(harness, everything, namespace, fd, "-no-publish-features=*")
    some = unique("nfw-some")
    nf_worker(harness, some, namespace, fd, "-no-publish-features=cpu.*,kernel.config")

    obj = wait_nf(harness, namespace, everything, lambda o: bool(o["spec"]["labels"]), "object")
    assert not any(obj["spec"].get("features", {}).get(k) for k in ("flags", "attributes"))
    assert not obj["spec"].get("features", {}).get("instances")
    # Labels are computed from the full discovery, as upstream's.
    assert obj["spec"]["labels"][f"{FNK}/cpu-cpuid.AVX2"] == "true"

    obj = wait_nf(harness, namespace, some, lambda o: bool(o["spec"]["labels"]), "object")
    names = {n for kind in obj["spec"]["features"].values() for n in kind}
    assert names and not any(n.startswith("cpu.") or n == "kernel.config" for n in names)
    assert "kernel.version" in names and "pci.device" in names
    assert obj["spec"]["labels"][f"{FNK}/cpu-cpuid.AVX2"] == "true"


def worker_pod(plane: ControlPlane, namespace: str, account: str = "default") -> tuple[Any, Any]:
    """A DaemonSet and a Pod it owns, as the DaemonSet controller would make them (no
    controller runs here: the objects only have to exist for the worker's lookups)."""
    ds = plane.apps.create_namespaced_daemon_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "nfd-worker"},
            "spec": {
                "selector": {"matchLabels": {"app": "nfd-worker"}},
                "template": {
                    "metadata": {"labels": {"app": "nfd-worker"}},
                    "spec": {"containers": [{"name": "w", "image": "nfd"}]},
                },
            },
        },
    )
    pod = plane.core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "nfd-worker-abcde",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "DaemonSet",
                        "name": "nfd-worker",
                        "uid": ds.metadata.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "serviceAccountName": account,
                "containers": [{"name": "w", "image": "nfd"}],
            },
        },
    )
    return ds, pod


def test_owner_refs_name_the_node_the_pod_and_its_daemonset(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    plane = harness.plane
    node = register(harness, "nfw-owner")
    node_uid = harness.node(node).metadata.uid
    plane.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    ds, pod = worker_pod(plane, namespace)
    fd = tmp_path / "features.d"
    fd.mkdir()
    env = {"POD_NAME": pod.metadata.name, "POD_UID": pod.metadata.uid}
    nf_worker(harness, node, namespace, fd, "-owner-refs=ds,pod,node", env=env)
    obj = wait_nf(harness, namespace, node, lambda o: bool(o["spec"]["labels"]), "object")
    # Upstream's order (node, pod, ds), none blocking deletion.
    assert obj["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "name": node,
            "uid": node_uid,
            "blockOwnerDeletion": False,
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod.metadata.name,
            "uid": pod.metadata.uid,
            "blockOwnerDeletion": False,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": "nfd-worker",
            "uid": ds.metadata.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        },
    ]
    assert obj["metadata"]["annotations"][POD_UID_ANNOTATION] == pod.metadata.uid

    # The default (pod,ds), and -owner-refs= (none), on other nodes.
    default, none = unique("nfw-default"), unique("nfw-none")
    nf_worker(harness, default, namespace, fd, env=env)
    nf_worker(harness, none, namespace, fd, "-owner-refs=", env=env)
    obj = wait_nf(harness, namespace, default, lambda o: bool(o["spec"]["labels"]), "object")
    assert [r["kind"] for r in obj["metadata"]["ownerReferences"]] == ["Pod", "DaemonSet"]
    obj = wait_nf(harness, namespace, none, lambda o: bool(o["spec"]["labels"]), "object")
    assert not obj["metadata"].get("ownerReferences")


def test_worker_nodefeature_to_master_to_node_labels(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    node = register(harness, "nfw-master")
    harness.master(f"--namespace={namespace}")
    fd = tmp_path / "features.d"
    fd.mkdir()
    nf_worker(harness, node, namespace, fd)
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/cpu-cpuid.AVX2") == "true", "labels")
    start = time.monotonic()
    (fd / "e2e").write_text("e2e-local=yes\n")
    harness.wait_labels(node, lambda lb: lb.get(f"{FNK}/e2e-local") == "yes", "local label")
    took = time.monotonic() - start
    assert took < 3.0, f"features.d -> NodeFeature -> Node took {took:.2f} s"
    print(f"features.d -> NodeFeature -> Node label: {took:.3f} s")


def test_the_worker_role_of_deploy_base_is_all_nodefeature_mode_needs(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    """The worker runs with the nfd-worker ServiceAccount's token and nothing else: the
    Role from deploy/base/rbac.yaml lets it read its Pod (DaemonSet owner), create and
    update its NodeFeature."""
    import yaml

    plane = harness.plane
    rbac = yaml.safe_load_all((REPO / "deploy" / "base" / "rbac.yaml").read_text())
    for doc in rbac:
        if doc and doc["metadata"]["name"] == "nfd-worker":
            doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects", []):
                subject["namespace"] = namespace
            plane.kubectl("apply", "-f", "-", input=json.dumps(doc), check=True)
    token = plane.kubectl(
        "create", "token", "nfd-worker", "-n", namespace, check=True
    ).stdout.strip()
    kubeconfig = yaml.safe_load(Path(plane.kubeconfig).read_text())
    for user in kubeconfig["users"]:
        user["user"] = {"token": token}
    worker_kubeconfig = tmp_path / "worker.kubeconfig"
    worker_kubeconfig.write_text(yaml.safe_dump(kubeconfig))
    ds, pod = worker_pod(plane, namespace, account="nfd-worker")
    node = unique("nfw-rbac")
    fd = tmp_path / "features.d"
    fd.mkdir()
    env = {"POD_NAME": pod.metadata.name, "POD_UID": pod.metadata.uid}
    nf_worker(harness, node, namespace, fd, env=env, kubeconfig=worker_kubeconfig)
    obj = wait_nf(harness, namespace, node, lambda o: bool(o["spec"]["labels"]), "object")
    assert [r["uid"] for r in obj["metadata"]["ownerReferences"]] == [
        pod.metadata.uid,
        ds.metadata.uid,
    ]
    (fd / "e2e").write_text("e2e-local=yes\n")  # an update, with the same token
    wait_nf(harness, namespace, node, lambda o: "e2e-local" in o["spec"]["labels"], "update")
    assert "403" not in harness.logs()


def test_publisher_reads_back_what_it_wrote_as_unchanged(
    harness: Harness, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison the resync and every change use, against what the apiserver really
    stores (the CRD's structural schema, defaulting, field order): the object as read back
    counts as unchanged, so a resync of a current object writes nothing; a change made by
    someone else is put right by the next one."""
    from nfd.hostfs import HostFS
    from nfd.worker.config import parse_config_text
    from nfd.worker.discovery import run_discovery
    from nfd.worker.nodefeature import NodeFeaturePublisher

    monkeypatch.setenv("POD_UID", "0000-uid")
    node = unique("nfw-sync")
    result = run_discovery(HostFS(str(FIXTURES / "host-full")), parse_config_text("", "c"), node)
    pub = NodeFeaturePublisher(
        node, namespace=namespace, api_client=harness.plane.api_client, owner_refs=[]
    )
    assert pub.sync(result.labels, result.features) is True
    assert pub.sync(result.labels, result.features) is False
    assert (pub.creates, pub.updates) == (1, 0)
    custom(harness.plane).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, node, {"spec": {"labels": {"someone": "else"}}}
    )
    assert pub.sync(result.labels, result.features) is True
    obj = get_nf(harness, namespace, node)
    assert obj is not None and obj["spec"]["labels"] == result.labels
    assert obj["metadata"]["annotations"][POD_UID_ANNOTATION] == "0000-uid"


def test_our_nodefeature_worker_to_upstream_v019_master(
    harness: Harness, namespace: str, tmp_path: Path
) -> None:
    """Upstream v0.19.0's own nfd-master (built from its Go module by hack/upstream-nfd.sh)
    reads our worker's object and labels the Node: the object is the shape it expects."""
    from tests.compat.upstream import current_binary, register_kubelet_node
    from tests.kube.controlplane import free_port

    plane = harness.plane
    for crd in ("crd-nodefeaturegroups.yaml",):
        plane.kubectl("apply", "-f", str(REPO / "deploy" / "base" / crd), check=True)
    node = unique("nfw-up019")
    register_kubelet_node(plane, node)  # v0.19's master, too, patches under annotations
    harness.nodes.append(node)
    config = tmp_path / "nfd-master.conf"
    config.write_text("# defaults only\n")
    harness.spawn(
        "upstream-v0.19-master",
        [
            str(current_binary("nfd-master")),
            f"-kubeconfig={plane.kubeconfig}",
            f"-config={config}",
            f"-port={free_port()}",
        ],
        env={"NODE_NAME": node, "KUBERNETES_NAMESPACE": namespace},
    )
    fd = tmp_path / "features.d"
    fd.mkdir()
    (fd / "e2e").write_text("e2e-local=yes\n")
    nf_worker(harness, node, namespace, fd)
    labels = harness.wait_labels(
        node,
        lambda lb: lb.get(f"{FNK}/cpu-cpuid.AVX2") == "true" and f"{FNK}/e2e-local" in lb,
        "labels from upstream v0.19's master",
    )
    assert labels[f"{FNK}/e2e-local"] == "yes"
    ann = harness.node(node).metadata.annotations or {}
    assert "cpu-cpuid.AVX2" in ann.get("nfd.node.kubernetes.io/feature-labels", "")
