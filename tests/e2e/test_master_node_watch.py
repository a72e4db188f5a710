"""nfd.master.kube.NodeWatcher against a real kube-apiserver: which Nodes exist, from one
metadata-only list and a watch that resumes where it ended (no relist every few minutes)."""

from __future__ import annotations

import threading
from pathlib import Path

import yaml
from kubernetes import config

from nfd.master.kube import NodeWatcher
from tests.e2e.master_harness import unique
from tests.kube.controlplane import ControlPlane, wait_until


def test_node_watcher_lists_once_then_follows_adds_and_deletes(
    control_plane: ControlPlane,
) -> None:
    existing = unique("nw-old")
    control_plane.register_node(existing)
    syncs: list[set[str]] = []
    known: set[str] = set()
    lock = threading.Lock()

    def on_sync(names: set[str]) -> None:
        with lock:
            syncs.append(set(names))
            known.clear()
            known.update(names)

    def on_added(name: str) -> None:
        with lock:
            known.add(name)

    def on_deleted(name: str) -> None:
        with lock:
            known.discard(name)

    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    watcher = NodeWatcher(api, on_sync, on_added, on_deleted, watch_seconds=1)
    watcher.start()
    new = unique("nw-new")
    try:
        assert watcher.synced.wait(30)
        assert existing in syncs[0]
        control_plane.register_node(new)
        wait_until(lambda: new in known or None, 30, "the added Node")
        control_plane.delete_node(existing)
        wait_until(lambda: existing not in known or None, 30, "the deleted Node")
        # Several 1 s watches have ended meanwhile: each resumed, none listed again.
        threading.Event().wait(2.5)
        control_plane.delete_node(new)
        wait_until(lambda: new not in known or None, 30, "the second deleted Node")
        assert len(syncs) == 1
    finally:
        watcher.stop()
        control_plane.delete_node(existing, wait=False)
        control_plane.delete_node(new, wait=False)


LIST_ONLY_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {{name: list-only, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {ns}-list-only}}
rules:
  - apiGroups: [""]
    resources: [nodes]
    verbs: [get, list, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {ns}-list-only}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {ns}-list-only}}
subjects: [{{kind: ServiceAccount, name: list-only, namespace: {ns}}}]
"""


def test_node_watcher_lists_now_and_then_when_only_list_is_allowed(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """Upstream v0.19's nfd-master ClusterRole grants nodes get/list/patch/update, not
    watch: the watcher lists, is refused the watch (403) and lists again every
    list_only_seconds (not every 2 s), still seeing new and deleted Nodes."""
    plane = control_plane
    plane.kubectl("apply", "-f", "-", input=LIST_ONLY_RBAC.format(ns=namespace), check=True)
    token = plane.kubectl(
        "create", "token", "list-only", "-n", namespace, check=True
    ).stdout.strip()
    kubeconfig = yaml.safe_load(Path(plane.kubeconfig).read_text())
    for user in kubeconfig["users"]:
        user["user"] = {"token": token}
    path = tmp_path / "list-only.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    syncs: list[set[str]] = []
    existing = unique("nw-lo")
    plane.register_node(existing)
    api = config.new_client_from_config(config_file=str(path))
    watcher = NodeWatcher(
        api, syncs.append, lambda n: None, lambda n: None, watch_seconds=1, list_only_seconds=1.5
    )
    watcher.start()
    try:
        assert watcher.synced.wait(30)
        assert existing in syncs[0]
        wait_until(lambda: watcher.list_only or None, 10, "the watch refused")
        plane.delete_node(existing)
        wait_until(lambda: existing not in syncs[-1] or None, 10, "the deleted Node listed")
        began = len(syncs)
        threading.Event().wait(3.2)
        # About one list per 1.5 s, not one per 2 s retry plus the failures.
        assert 1 <= len(syncs) - began <= 3, len(syncs) - began
    finally:
        watcher.stop()
        plane.delete_node(existing, wait=False)
        plane.kubectl("delete", "clusterrole,clusterrolebinding", f"{namespace}-list-only")
