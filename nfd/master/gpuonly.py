"""``nfd-master --gpu-marking-only``: only the GPU marking stage, for clusters whose
feature labels come from another NFD. Watches Nodes; no gRPC.

Its labels are tracked under the ``gpu-marking`` instance's annotations
(``gpu-marking.nfd.node.kubernetes.io/feature-labels``) so the other NFD, which
rewrites ``nfd.node.kubernetes.io/feature-labels``, never claims or removes them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from nfd.master.kube import GpuFn, KubeNodes, NodeUpdater
from nfd.master.metrics import MasterMetrics
from nfd.master.policy import Desired
from nfd.master.queue import NodeQueue

log = logging.getLogger("nfd-master")

GPU_ONLY_INSTANCE = "gpu-marking"


def run_gpu_marking_only(
    api_client: Any,
    gpu_fn: GpuFn,
    metrics: MasterMetrics,
    stop: threading.Event,
    *,
    instance: str = GPU_ONLY_INSTANCE,
    parallelism: int = 10,
    resync_seconds: float = 300.0,
) -> None:
    from kubernetes import client, watch

    nodes = KubeNodes(api_client)
    updater = NodeUpdater(nodes, instance=instance, gpu_fn=gpu_fn, on_update=metrics.updates.inc)
    # Items are the newest node object seen (list or watch event): deciding needs no
    # extra read, which matters when every kubelet heartbeat is a MODIFIED event.
    queue: NodeQueue[dict[str, Any]] = NodeQueue(
        lambda name, node: updater.apply(name, Desired(), True, node=node),
        parallelism,
        on_failure=lambda n, e: metrics.update_failures.inc(),
    )
    to_dict = api_client.sanitize_for_serialization
    core: Any = client.CoreV1Api(api_client)
    try:
        while not stop.is_set():
            try:
                listing = core.list_node()
                for n in listing.items:
                    metrics.update_requests.inc()
                    queue.put(n.metadata.name, to_dict(n))
                w = watch.Watch()
                for event in w.stream(
                    core.list_node,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=int(resync_seconds),
                ):
                    if stop.is_set():
                        break
                    if event["type"] in ("ADDED", "MODIFIED"):
                        metrics.update_requests.inc()
                        obj = event["object"]
                        queue.put(obj.metadata.name, to_dict(obj))
            except Exception as err:  # noqa: BLE001 - keep watching through API hiccups
                log.warning("node watch: %s (retrying)", err)
                stop.wait(2.0)
    finally:
        queue.stop()
