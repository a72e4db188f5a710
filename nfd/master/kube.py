"""The Kubernetes API edge of the master: read Nodes, send JSON patches, retry on
conflicts. Nodes are handled as plain dicts (the API's JSON), not client models."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from nfd.labels import node_name_error
from nfd.master.patch import Op, Owned, annotation_ns, compute_patch, parse_owned, split_patch
from nfd.master.policy import Desired, is_gpu_marking_label
from nfd.master.queue import NodeGone, Permanent
from nfd.master.watch import Key, ListWatcher

log = logging.getLogger("nfd-master")

JSON_PATCH = "application/json-patch+json"
MAX_CONFLICT_RETRIES = 8
# Metadata only: a Node's status (images, conditions) is most of its size and of its
# changes; the master only needs to know which Nodes exist.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

# (node labels, owned label names, raw features show an NVIDIA GPU) -> GPU labels.
GpuFn = Callable[[Mapping[str, str], set[str], bool], dict[str, str]]


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


def is_permanent_status(code: int | None) -> bool:
    """A 4xx a retry cannot fix: all but 409 (conflict, re-read and retry), 422 (our
    resourceVersion test failed) and 429 (throttled)."""
    return code is not None and 400 <= code < 500 and code not in (409, 422, 429)


def checked_name(name: str) -> str:
    """``name`` if it can be a Node's name; a name with '/', '..' or '%' would address
    another path of the API (``node/status``), so it never reaches a request."""
    why = node_name_error(name)
    if why is not None:
        raise Permanent(f"refusing an API call for an invalid node name: {why}")
    return name


class KubeNodes:
    """Node reads and patches through the ``kubernetes`` client."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)

    def get(self, name: str) -> dict[str, Any]:
        resp = self.core.read_node(checked_name(name), _preload_content=False)
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
        resp = call(checked_name(name), ops, _content_type=JSON_PATCH, _preload_content=False)
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
    gpu = gpu_fn(current, set(owned.labels), desired.gpu_hardware)
    labels = dict(desired.labels)
    labels.update(gpu)
    return Desired(
        labels,
        desired.annotations,
        desired.extended_resources,
        desired.taints,
        desired.gpu_hardware,
    )


class NodeUpdater:
    """Applies a desired state to one Node with minimal, conflict-safe patches."""

    def __init__(
        self,
        nodes: KubeNodes,
        *,
        instance: str = "",
        gpu_fn: GpuFn | None = None,
        on_update: Callable[[], None] | None = None,
        allow_overwrite: bool = True,
    ) -> None:
        self.nodes = nodes
        self.instance = instance
        # restrictions.allowOverwrite: False leaves labels, feature annotations and
        # extended resources NFD does not own as they are (and does not take them over).
        self.allow_overwrite = allow_overwrite
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
            node,
            desired,
            owned,
            allow_remove=allow_remove,
            instance=self.instance,
            allow_overwrite=self.allow_overwrite,
        )

    def _loop(
        self,
        name: str,
        make_ops: Callable[[Mapping[str, Any]], list[Op]],
        node: dict[str, Any] | None = None,
    ) -> bool:
        changed = False
        last_code, last_reason = None, ""
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
            except Permanent:
                raise
            except Exception as err:
                code = api_status(err)
                if code == 404:
                    raise NodeGone(f"node {name} not found") from None
                if code in (409, 422):
                    log.info("node %s: conflict (%s), re-reading and retrying", name, code)
                    node = None
                    last_code, last_reason = code, getattr(err, "reason", "")
                    continue
                if is_permanent_status(code):
                    reason = getattr(err, "reason", "") or type(err).__name__
                    raise Permanent(
                        f"node {name}: API refused the update: {code} {reason}"
                    ) from None
                raise
        if last_code == 422:
            # Refused on a fresh read every time: the patch itself is invalid, not raced.
            tries = MAX_CONFLICT_RETRIES
            raise Permanent(f"node {name}: API refused the patch {tries} times: 422 {last_reason}")
        raise RuntimeError(f"node {name}: still conflicting after {MAX_CONFLICT_RETRIES} tries")


class NodeWatcher(ListWatcher):
    """Which Nodes exist: a metadata-only list and watch of Nodes.

    The master keeps per-node state only for Nodes that exist, so made-up names cost
    nothing and a deleted Node's state goes with it. Metadata only because at 10,000
    nodes the full objects are ~10x larger and change with every status report; the
    names alone are ~1 MB. ``on_sync(names)`` after every (re)list, ``on_added`` and
    ``on_deleted`` per watch event. The watch resumes from the last version seen: at
    10,000 nodes a relist every few minutes would parse ~80 MB of metadata each time.
    """

    what = "Node"
    thread_name = "nfd-node-watch"
    list_accept = METADATA_LIST
    watch_accept = METADATA_WATCH

    def __init__(
        self,
        api_client: Any,
        on_sync: Callable[[set[str]], None],
        on_added: Callable[[str], None],
        on_deleted: Callable[[str], None],
        *,
        watch_seconds: int = 300,
        list_only_seconds: float = 60.0,
    ) -> None:
        from kubernetes import client

        super().__init__(page_size=500, watch_seconds=watch_seconds)
        self.core: Any = client.CoreV1Api(api_client)
        self.on_sync, self.on_added, self.on_deleted = on_sync, on_added, on_deleted
        # Upstream v0.19's nfd-master ClusterRole grants list but not watch on nodes: with
        # the watch forbidden (403) the Nodes are listed this often instead.
        self.list_only_seconds = list_only_seconds
        self.list_only = False

    def request(self, **kwargs: Any) -> Any:
        return self.core.list_node(**kwargs)

    def relisted(self, keys: set[Key], first: bool) -> None:
        self.on_sync({name for _, name in keys})

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if kind == "ADDED":
            self.on_added(name)
        elif kind == "DELETED":
            self.on_deleted(name)

    def failed(self, err: BaseException, code: int | None, listed: bool) -> float:
        if not (listed and code == 403):
            return super().failed(err, code, listed)
        # Listed, but not allowed to watch: list again now and then.
        if not self.list_only:
            log.warning(
                "Node watch forbidden (403; the RBAC grants list, not watch, on "
                "nodes, as upstream v0.19's nfd-master ClusterRole): listing "
                "Nodes every %.0fs instead",
                self.list_only_seconds,
            )
            self.list_only = True
        return self.list_only_seconds
