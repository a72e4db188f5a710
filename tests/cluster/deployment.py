"""Helpers for the tests on the real node: apply overlays, wait for pods, compare labels."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.kube.cluster import Cluster
from tests.kube.controlplane import REPO_ROOT, wait_until

NAMESPACE = "node-feature-discovery"
DEFAULT_OVERLAY = REPO_ROOT / "deploy" / "overlays" / "default"
FEATURES_D = Path("/etc/kubernetes/node-feature-discovery/features.d")
SOURCE_D = Path("/etc/kubernetes/node-feature-discovery/source.d")
MASTER = "app.kubernetes.io/component=master"
WORKER = "app.kubernetes.io/component=worker"


def is_nfd_label(key: str) -> bool:
    """A label nfd owns: <anything.>feature.node.kubernetes.io/..., nvidia.com/gpu.* marks."""
    namespace = key.partition("/")[0]
    return namespace.endswith("feature.node.kubernetes.io") or (
        namespace == "nvidia.com" and key.startswith("nvidia.com/gpu.")
    )


def nfd_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if is_nfd_label(k)}


def host_labels(*args: str) -> dict[str, str]:
    """What `nfd export labels` gives for this host (the labels the worker pod must produce)."""
    nfd = Path(sys.executable).with_name("nfd")
    result = subprocess.run(
        [str(nfd), "export", "labels", *args], capture_output=True, text=True, check=True
    )
    labels: dict[str, str] = json.loads(result.stdout)
    return labels


def clear_nfd_labels(cluster: Cluster) -> None:
    """Remove every nfd label and annotation from the Node (labels outlive an uninstall, as
    upstream's do), so that a test sees its own deployment label the node."""
    node = json.loads(cluster.kubectl("get", "node", cluster.node, "-o", "json", check=True).stdout)
    labels = [k for k in node["metadata"].get("labels", {}) if is_nfd_label(k)]
    annotations = [
        k for k in node["metadata"].get("annotations", {}) if "nfd.node.kubernetes.io" in k
    ]
    patch = {
        "metadata": {
            "labels": dict.fromkeys(labels),
            "annotations": dict.fromkeys(annotations),
        }
    }
    cluster.kubectl(
        "patch", "node", cluster.node, "--type=merge", "-p", json.dumps(patch), check=True
    )


def netns_get(cluster: Cluster, url: str, timeout: float = 10.0) -> str:
    """GET `url` from inside the cluster's network namespace (pod and Service addresses exist
    only there); returns the body."""
    fetch = (
        "import sys, urllib.request;"
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    )
    result = subprocess.run(
        cluster.in_netns([sys.executable, "-c", fetch, url]),
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    )
    return result.stdout


def pods(cluster: Cluster, selector: str, namespace: str = NAMESPACE) -> list[dict]:
    result = cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", selector, "-o", "json", check=True
    )
    items: list[dict] = json.loads(result.stdout)["items"]
    return items


def running_pods(cluster: Cluster, selector: str, namespace: str = NAMESPACE) -> list[str]:
    """Names of the pods that are Running and Ready and not being deleted."""
    names = []
    for pod in pods(cluster, selector, namespace):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if (
            pod["status"].get("phase") == "Running"
            and conditions.get("Ready") == "True"
            and "deletionTimestamp" not in pod["metadata"]
        ):
            names.append(pod["metadata"]["name"])
    return names


def wait_running(
    cluster: Cluster, selector: str, timeout: float, namespace: str = NAMESPACE, count: int = 1
) -> list[str]:
    """Wait until exactly `count` pods match `selector` and are Ready; return their names."""

    def ready() -> list[str] | None:
        names = running_pods(cluster, selector, namespace)
        return names if len(names) == count else None

    return wait_until(ready, timeout, f"{count} Ready pod(s) {selector} in {namespace}", 0.5)


def apply_kustomization(cluster: Cluster, directory: Path) -> float:
    """kubectl apply -k `directory` unchanged; returns the monotonic time it was applied."""
    cluster.kubectl("apply", "-k", str(directory), check=True)
    return time.monotonic()


def apply_test_overlay(cluster: Cluster, directory: Path) -> str:
    """Render a test's own kustomization (outside the repository, so kustomize must be let
    out of its root to reach deploy/) and apply it; returns the rendered manifests."""
    rendered = cluster.kubectl(
        "kustomize", "--load-restrictor=LoadRestrictionsNone", str(directory), check=True
    ).stdout
    cluster.kubectl("apply", "-f", "-", input=rendered, check=True)
    return rendered


def delete_manifests(cluster: Cluster, rendered: str, timeout: float = 120.0) -> None:
    """kubectl delete what apply_test_overlay applied, waiting until it is gone."""
    cluster.kubectl(
        "delete",
        "-f",
        "-",
        "--ignore-not-found",
        "--wait=true",
        f"--timeout={timeout:.0f}s",
        input=rendered,
        check=True,
        timeout=timeout + 30,
    )
