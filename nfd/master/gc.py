"""nfd-gc's work (the command is nfd/cli/gc.py): delete the NodeFeature and
NodeResourceTopology objects of Nodes that are gone, as upstream v0.19's nfd-gc does, so
that upstream's own manifests (whose nfd-gc Deployment runs ``nfd-gc``) run with our image.

Our nfd-master already collects NodeFeature objects itself (nfd/master/nodefeatures.py,
docs/compatibility.md §7); this command is for layouts that ship a separate collector. Both
at once is harmless: whichever deletes an object second gets a 404, which is not an error.

What it does, as upstream's:

- at start, and then every ``-gc-interval`` (default 1h): list the Nodes' names, then every
  NodeFeature (all namespaces) and NodeResourceTopology, ``-list-size`` objects a page,
  metadata only; delete each NodeFeature whose ``nfd.node.kubernetes.io/node-name`` label
  names no Node (or is missing) and each NodeResourceTopology named after no Node. A
  resource whose CRD is not installed is skipped;
- on a Node's deletion (a metadata-only watch of Nodes): delete the NodeFeatures that name
  it (a label-selector list) and its NodeResourceTopology;
- ``-port`` (8080) serves ``/metrics`` (``nfd_gc_objects_deleted_total{kind}``,
  ``nfd_gc_object_delete_failures_total{kind}``, ``nfd_gc_build_info{version}``) and
  ``/healthz``.

RBAC (upstream's nfd-gc ClusterRole): ``nodes`` list, watch; ``nodefeatures`` and
``noderesourcetopologies`` list, delete.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from nfd import __version__

log = logging.getLogger("nfd-gc")

NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
NF = ("nfd.k8s-sigs.io", "v1alpha1", "nodefeatures", "NodeFeature")
NRT = ("topology.node.k8s.io", "v1alpha2", "noderesourcetopologies", "NodeResourceTopology")
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
DEFAULT_INTERVAL = 3600.0
DEFAULT_LIST_SIZE = 200
DEFAULT_PORT = 8080


class GcMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        r = self.registry
        Gauge(
            "nfd_gc_build_info",
            "Version from which Node Feature Discovery was built.",
            ["version"],
            registry=r,
        ).labels(__version__).set(1)
        self.deleted = Counter(
            "nfd_gc_objects_deleted",
            "Number of NodeFeature and NodeResourceTopology objects garbage collected.",
            ["kind"],
            registry=r,
        )
        self.failures = Counter(
            "nfd_gc_object_delete_failures",
            "Number of errors in deleting NodeFeature and NodeResourceTopology objects.",
            ["kind"],
            registry=r,
        )


class GarbageCollector:
    """One collector over one API client; ``collect`` is a full pass, ``node_deleted`` the
    objects of one Node. Thread-safe (one pass at a time)."""

    def __init__(
        self, api_client: Any, metrics: GcMetrics, *, list_size: int = DEFAULT_LIST_SIZE
    ) -> None:
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.metrics = metrics
        self.list_size = list_size
        self._lock = threading.Lock()

    # -- listing ------------------------------------------------------------------

    def node_names(self) -> set[str]:
        names: set[str] = set()
        for meta in self._pages(lambda **kw: self.core.list_node(**kw), "Nodes", missing_ok=False):
            names.add(str(meta.get("name") or ""))
        return names

    def _custom_list(self, kind: tuple[str, str, str, str]) -> Callable[..., Any]:
        group, version, plural, _ = kind

        def call(**kw: Any) -> Any:
            return self.custom.list_cluster_custom_object(group, version, plural, **kw)

        return call

    def _pages(
        self, call: Callable[..., Any], what: str, *, missing_ok: bool = True, selector: str = ""
    ) -> Iterator[dict[str, Any]]:
        """Each object's metadata, page by page; nothing when the resource is not served
        (its CRD is not installed) and ``missing_ok``."""
        cont = None
        while True:
            kwargs: dict[str, Any] = {
                "_preload_content": False,
                "_headers": {"Accept": METADATA_LIST},
            }
            if self.list_size > 0:
                kwargs["limit"] = self.list_size
            if cont:
                kwargs["_continue"] = cont
            if selector:
                kwargs["label_selector"] = selector
            try:
                resp = call(**kwargs)
            except Exception as err:
                if missing_ok and getattr(err, "status", None) == 404:
                    log.debug("%s: not served (CRD not installed), skipped", what)
                    return
                raise
            body = json.loads(resp.data)
            resp.release_conn()
            for item in body.get("items") or []:
                yield item.get("metadata") or {}
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return

    # -- deleting -----------------------------------------------------------------

    def _delete(self, kind: tuple[str, str, str, str], namespace: str, name: str) -> bool:
        group, version, plural, label = kind
        where = f"{namespace}/{name}" if namespace else name
        try:
            if namespace:
                self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)
            else:
                self.custom.delete_cluster_custom_object(group, version, plural, name)
        except Exception as err:  # noqa: BLE001 - logged and counted; the next pass retries
            if getattr(err, "status", None) == 404:
                return False  # deleted already (by the master, or another collector)
            log.error("cannot delete %s %s: %s", label, where, err)
            self.metrics.failures.labels(label).inc()
            return False
        log.info("%s %s deleted: its Node is gone", label, where)
        self.metrics.deleted.labels(label).inc()
        return True

    def collect(self) -> int:
        """One full pass; the number of objects deleted."""
        with self._lock:
            nodes = self.node_names()
            count = 0
            for meta in list(self._pages(self._custom_list(NF), "NodeFeature")):
                node = (meta.get("labels") or {}).get(NODE_NAME_LABEL)
                if node is None:
                    log.info(
                        "NodeFeature %s/%s has no %s label",
                        meta.get("namespace"),
                        meta.get("name"),
                        NODE_NAME_LABEL,
                    )
                if node not in nodes:
                    count += self._delete(
                        NF, str(meta.get("namespace") or ""), str(meta.get("name") or "")
                    )
            for meta in list(self._pages(self._custom_list(NRT), "NodeResourceTopology")):
                name = str(meta.get("name") or "")
                if name not in nodes:
                    count += self._delete(NRT, "", name)
            log.info("garbage collection: %d objects deleted", count)
            return count

    def node_deleted(self, node: str) -> int:
        """The objects of one deleted Node; the number deleted."""
        if not node:
            return 0
        with self._lock:
            count = 0
            selector = f"{NODE_NAME_LABEL}={node}"
            for meta in list(self._pages(self._custom_list(NF), "NodeFeature", selector=selector)):
                count += self._delete(
                    NF, str(meta.get("namespace") or ""), str(meta.get("name") or "")
                )
            count += self._delete(NRT, "", node)
            return count


class Daemon:
    """The periodic passes and the Node watch's deletions, on one thread."""

    def __init__(self, gc: GarbageCollector, interval: float) -> None:
        self.gc = gc
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def node_deleted(self, node: str) -> None:
        with self._lock:
            self._pending.append(node)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        import time

        next_pass = 0.0  # at start, as upstream
        while not self._stop.is_set():
            with self._lock:
                pending, self._pending = self._pending, []
            try:
                for node in pending:
                    self.gc.node_deleted(node)
                if time.monotonic() >= next_pass:
                    self.gc.collect()
                    next_pass = time.monotonic() + self.interval
            except Exception as err:  # noqa: BLE001 - API down: retried shortly
                log.warning("garbage collection: %s (retrying in 10s)", err)
                next_pass = min(next_pass, time.monotonic() + 10.0)
            self._wake.wait(max(0.0, min(next_pass - time.monotonic(), self.interval)))
            self._wake.clear()
