"""The Kubernetes API edge of the master: read Nodes, send JSON patches, retry on
conflicts. Nodes are handled as plain dicts (the API's JSON), not client models."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nfd.master.patch import Op, Owned, annotation_ns, compute_patch, parse_owned, split_patch
from nfd.master.policy import Desired, is_gpu_marking_label
from nfd.master.queue import Permanent

log = logging.getLogger("nfd-master")

JSON_PATCH = "application/json-patch+json"
MAX_CONFLICT_RETRIES = 8

GpuFn = Callable[[Mapping[str, str], set[str]], dict[str, str]]


def load_api_client(kubeconfig: str | None) -> Any:
    """ApiClient from --kubeconfig, else in-cluster config, else the default kubeconfig."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


def api_status(err: BaseException) -> int | None:
    return getattr(err, "status", None)


class KubeNodes:
    """Node reads and patches through the ``kubernetes`` client."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)

    def get(self, name: str) -> dict[str, Any]:
        resp = self.core.read_node(name, _preload_content=False)
        return json.loads(resp.data)

    def list_all(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cont = None
        while True:
            resp = self.core.list_node(limit=500, _continue=cont, _preload_content=False)
            body = json.loads(resp.data)
            out.extend(body.get("items") or [])
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return out

    def patch(self, name: str, ops: list[Op], status: bool = False) -> dict[str, Any]:
        call = self.core.patch_node_status if status else self.core.patch_node
        resp = call(name, ops, _content_type=JSON_PATCH, _preload_content=False)
        return json.loads(resp.data)


def desired_with_gpu(
    node: Mapping[str, Any],
    desired: Desired,
    owned: Owned,
    allow_remove: bool,
    gpu_fn: GpuFn,
) -> Desired:
    """Run the GPU marking stage on the node's labels as they will be after this update
    (NFD's new labels merged in, its stale feature labels gone)."""
    current = dict((node.get("metadata") or {}).get("labels") or {})
    if allow_remove:
        for name in owned.labels:
            if name not in desired.labels and not is_gpu_marking_label(name):
                current.pop(name, None)
    current.update(desired.labels)
    gpu = gpu_fn(current, set(owned.labels))
    labels = dict(desired.labels)
    labels.update(gpu)
    return Desired(labels, desired.annotations, desired.extended_resources, desired.taints)


class NodeUpdater:
    """Applies a desired state to one Node with minimal, conflict-safe patches."""

    def __init__(
        self,
        nodes: KubeNodes,
        *,
        instance: str = "",
        gpu_fn: GpuFn | None = None,
        on_update: Callable[[], None] | None = None,
    ) -> None:
        self.nodes = nodes
        self.instance = instance
        self.gpu_fn = gpu_fn
        self.on_update = on_update

    def apply(
        self,
        name: str,
        desired: Desired,
        allow_remove: bool = True,
        node: dict[str, Any] | None = None,
    ) -> bool:
        """Patch node ``name``; True if anything changed. Retries on 409/422 (a writer
        got in between our read and our patch) after re-reading the node. ``node``: a
        recent copy (e.g. from a watch event) that saves the first read."""
        return self._loop(name, lambda n: self._ops(n, desired, allow_remove), node)

    def dry_run(self, name: str, desired: Desired, allow_remove: bool = True) -> list[Op]:
        """The patch ``apply`` would send now (``--no-publish`` with an API): read only."""
        return self._ops(self.nodes.get(name), desired, allow_remove)

    def prune(self, name: str) -> bool:
        """Remove everything this NFD instance owns, and all its annotations."""

        def ops(node: Mapping[str, Any]) -> list[Op]:
            out = compute_patch(node, Desired(), instance=self.instance, drop_all_tracking=True)
            ann = (node.get("metadata") or {}).get("annotations") or {}
            ns = annotation_ns(self.instance)
            removed = {op["path"] for op in out}
            extra = []
            for key in sorted(ann):
                path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
                if key.split("/", 1)[0] == ns and path not in removed:
                    extra.append({"op": "remove", "path": path})
            if extra and not out:
                version = (node.get("metadata") or {}).get("resourceVersion")
                out = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
            return out + extra

        return self._loop(name, ops)

    def _ops(self, node: Mapping[str, Any], desired: Desired, allow_remove: bool) -> list[Op]:
        owned = parse_owned(node, self.instance)
        if self.gpu_fn is not None:
            desired = desired_with_gpu(node, desired, owned, allow_remove, self.gpu_fn)
        return compute_patch(
            node, desired, owned, allow_remove=allow_remove, instance=self.instance
        )

    def _loop(
        self,
        name: str,
        make_ops: Callable[[Mapping[str, Any]], list[Op]],
        node: dict[str, Any] | None = None,
    ) -> bool:
        changed = False
        for _attempt in range(MAX_CONFLICT_RETRIES):
            try:
                if node is None:
                    node = self.nodes.get(name)
                ops = make_ops(node)
                if not ops:
                    if changed and self.on_update:
                        self.on_update()
                    return changed
                main, status = split_patch(ops)
                # Status first (as upstream), then metadata/spec from the fresh object.
                if status:
                    log.info("node %s: patching status (%d ops)", name, len(status) - 1)
                    log.debug("node %s: status patch %s", name, json.dumps(status))
                    node = self.nodes.patch(name, status, status=True)
                elif main:
                    log.info("node %s: patching (%d ops)", name, len(main) - 1)
                    log.debug("node %s: patch %s", name, json.dumps(main))
                    node = self.nodes.patch(name, main)
                changed = True
            except Exception as err:
                code = api_status(err)
                if code == 404:
                    raise Permanent(f"node {name} not found") from None
                if code in (409, 422):
                    log.info("node %s: conflict (%s), re-reading and retrying", name, code)
                    node = None
                    continue
                raise
        raise RuntimeError(f"node {name}: still conflicting after {MAX_CONFLICT_RETRIES} tries")
