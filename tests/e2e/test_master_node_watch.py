"""nfd.master.kube.NodeWatcher against a real kube-apiserver: which Nodes exist, from one
metadata-only list and a watch that resumes where it ended (no relist every few minutes)."""

from __future__ import annotations

import threading

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
