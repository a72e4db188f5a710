"""NodeFeature objects (nfd.k8s-sigs.io/v1alpha1, namespaced) as master input.

Upstream v0.19's workers, vendor agents and GPU Feature Discovery publish a node's labels
and raw features in NodeFeature objects; the master merges every object of a node into
one input, as upstream v0.19 does:

- An object belongs to the node its ``nfd.node.kubernetes.io/node-name`` label names; an
  object without it is not used (it is only seen by the garbage collector).
- Order: objects in the master's own namespace first, then by name, then by namespace.
  The first object is the base and each later one is merged into it: labels and
  attribute elements of a later object replace those of an earlier one, flag elements
  are unioned, instances appended. So on a conflict the object last in that order wins
  (a third-party object beats the node's own worker's object in the NFD namespace).
- Unprefixed label names get ``feature.node.kubernetes.io/`` per object before the
  merge, unless the feature gate DisableAutoPrefix is on (then they stay as written).
- ``restrictions.nodeFeatureNamespaceSelector``: only objects in the namespaces it
  selects are merged (the master's own namespace is not special, as upstream); the
  others are kept (for the GC and a later change of the selection) but give nothing.

Memory: per object only its node, its namespace/name, its labels and its features as
compressed v1alpha1.Features parts are kept, never the object (no managedFields, no
metadata); labels and feature sets equal to another object's are held once
(nfd.master.packed); upstream #2022 is a master whose memory is its cache of
whole NodeFeature objects. List pages are parsed one item at a time, so a page of 200
objects with kernel configs never exists as Python objects at once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from nfd import origins
from nfd._proto import v1alpha1_pb2
from nfd.features import FeatureFormatError, Features
from nfd.master.packed import PARTS, Part, unpack_features
from nfd.master.policy import prefix_names
from nfd.master.watch import Key, ListWatcher, key_of
from nfd.master.watch import iter_list_items as iter_list_items  # re-exported
from nfd.wire import features_to_proto

log = logging.getLogger("nfd-master")

GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeatures"
NODE_NAME_LABEL = "nfd.node.kubernetes.io/node-name"
# Upstream v0.19's informerPageSize default.
DEFAULT_PAGE_SIZE = 200


class NamespaceFilter(Protocol):
    """Which namespaces' NodeFeature objects count (nfd.master.namespaces)."""

    synced: threading.Event

    def selected(self, namespace: str) -> bool: ...


@dataclass(frozen=True)
class NodeInput:
    """The merged NodeFeature input of one node."""

    labels: dict[str, str]
    features: v1alpha1_pb2.Features


@dataclass(slots=True)
class _Obj:
    node: str  # "" when the object has no node-name label
    labels: Mapping[str, str]  # shared with the objects that give the same (never changed)
    features: tuple[Part, ...]  # one per feature set, shared likewise (nfd.master.packed)
    digest: bytes
    ok: bool = True  # False: refused (bad spec, over budget), kept only for the GC
    origins: bytes = b""  # nfd.origins.pack of our worker's local-origins annotation


def merge_features_into(out: v1alpha1_pb2.Features, src: v1alpha1_pb2.Features) -> None:
    """Upstream's Features.MergeInto: flag sets unioned, attribute elements replaced key
    by key, instances appended; a set of ``src`` absent from ``out`` is created."""
    for name, fs in src.flags.items():
        elements = out.flags[name].elements
        for key in fs.elements:
            elements[key].SetInParent()
    for name, afs in src.vattributes.items():
        out.vattributes[name].elements.update(afs.elements)
    for name, ifs in src.instances.items():
        out.instances[name].elements.extend(ifs.elements)


def spec_of(
    obj: Mapping[str, Any], keep_names: bool = False
) -> tuple[dict[str, str], v1alpha1_pb2.Features]:
    """(labels, features) of a NodeFeature object; ValueError naming the bad field.
    ``keep_names``: DisableAutoPrefix (unprefixed label names are not prefixed)."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ValueError("spec: expected a mapping")
    raw = spec.get("labels") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("spec.labels: expected a mapping")
    labels = prefix_names({str(k): "" if v is None else str(v) for k, v in raw.items()}, keep_names)
    try:
        features = Features.from_dict(spec.get("features"))
    except FeatureFormatError as err:
        raise ValueError(f"spec.features: {err}") from None
    return labels, features_to_proto(features)


def _digest(labels: Mapping[str, str], features: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for k, v in sorted(labels.items()):
        h.update(f"{k}\0{v}\1".encode())
    h.update(features)
    return h.digest()


def _origins_of(key: Key, meta: Mapping[str, Any]) -> bytes:
    """The bounded, packed local-origins annotation of an object (b"" if none); a bad
    one is logged and costs only itself."""
    text = (meta.get("annotations") or {}).get(origins.ANNOTATION)
    if not isinstance(text, str):
        return b""
    try:
        return origins.pack(*origins.decode(text))
    except origins.OriginsError as err:
        what = f"NodeFeature {key[0]}/{key[1]}: annotation {origins.ANNOTATION}"
        log.warning("%s: %s (ignored)", what, err)
        return b""


class NodeFeatureStore:
    """The NodeFeature objects the master has seen, reduced to what labelling needs.

    ``check(node, labels, features)`` raises ValueError for an object over the master's
    per-update budget: such an object is logged and left out, costing only itself.
    Thread-safe; every mutator returns the nodes whose merged input changed.
    """

    def __init__(
        self,
        namespace: str,
        check: Callable[[str, Mapping[str, str], v1alpha1_pb2.Features], None] | None = None,
        *,
        deny_third_party_labels: bool = False,
        disable_auto_prefix: bool = False,
        namespace_filter: NamespaceFilter | None = None,
    ) -> None:
        self.namespace = namespace
        self.check = check
        self.disable_auto_prefix = disable_auto_prefix
        # restrictions.nodeFeatureNamespaceSelector: None, every namespace counts.
        self.namespace_filter = namespace_filter
        # restrictions.denyNodeFeatureLabels: only the node's own object (in the master's
        # namespace, named after the node) gives labels; the others give only features.
        self.deny_third_party_labels = deny_third_party_labels
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._objs: dict[Key, _Obj] = {}
        self._by_node: dict[str, set[Key]] = {}

    # -- reading ----------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._objs)

    def nodes(self) -> set[str]:
        with self._lock:
            return set(self._by_node)

    def has(self, node: str) -> bool:
        """Whether an object names ``node`` (used or refused)."""
        with self._lock:
            return node in self._by_node

    def keys(self) -> dict[Key, str]:
        """Every object (namespace, name) -> the node it names ("" for none)."""
        with self._lock:
            return {key: o.node for key, o in self._objs.items()}

    def objects_of(self, node: str) -> list[Key]:
        with self._lock:
            return sorted(self._by_node.get(node, ()))

    def _order(self, keys: Iterable[Key]) -> list[Key]:
        # Own namespace first, then by name, then by namespace (upstream's sort).
        return sorted(keys, key=lambda k: (k[0] != self.namespace, k[1], k[0]))

    def complete(self) -> bool:
        """Every object is listed and, with a namespace selector, the namespaces too:
        until then a node's merged input may lack objects (nothing may be removed)."""
        selected = self.namespace_filter
        return self.synced.is_set() and (selected is None or selected.synced.is_set())

    def _counts(self, key: Key) -> bool:
        selected = self.namespace_filter
        return selected is None or selected.selected(key[0])

    def nodes_in(self, namespaces: Iterable[str]) -> set[str]:
        """The nodes that objects in ``namespaces`` name (a change of the selection)."""
        wanted = set(namespaces)
        with self._lock:
            return {o.node for k, o in self._objs.items() if o.node and k[0] in wanted}

    def merged(self, node: str) -> NodeInput | None:
        """The node's objects merged in upstream's order; None when it has none (or
        none in a selected namespace)."""
        with self._lock:
            objs = [(k, self._objs[k]) for k in self._order(self._by_node.get(node, ()))]
            objs = [(k, o) for k, o in objs if o.ok and self._counts(k)]
        if not objs:
            return None
        labels: dict[str, str] = {}
        features = v1alpha1_pb2.Features()
        own = (self.namespace, node)
        for key, o in objs:
            if not self.deny_third_party_labels or key == own:
                labels.update(o.labels)
            merge_features_into(features, unpack_features(o.features))
        return NodeInput(labels, features)

    def local_origins(self, key: Key) -> tuple[origins.Origins, int] | None:
        """The files and hooks of the local labels in object ``key`` (our worker's
        annotation, nfd.origins); None when it has none."""
        with self._lock:
            o = self._objs.get(key)
        return origins.unpack(o.origins) if o is not None and o.ok else None

    def label_sources(self, node: str) -> dict[str, list[tuple[Key, str]]]:
        """For each label the node's objects give (as ``merged`` uses them): every object
        that gives it, with its value, in merge order; the last one's value wins. For
        ``kubectl nfd explain``, computed on request from what is kept anyway."""
        with self._lock:
            objs = [(k, self._objs[k]) for k in self._order(self._by_node.get(node, ()))]
        own = (self.namespace, node)
        out: dict[str, list[tuple[Key, str]]] = {}
        for key, o in objs:
            if not o.ok or not self._counts(key) or (self.deny_third_party_labels and key != own):
                continue
            for name, value in o.labels.items():
                out.setdefault(name, []).append((key, value))
        return out

    # -- writing ----------------------------------------------------------------

    def upsert(self, obj: Mapping[str, Any]) -> set[str]:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        node = str((meta.get("labels") or {}).get(NODE_NAME_LABEL) or "")
        if not node:
            return self._put(key, _Obj("", {}, (), b""))
        try:
            labels, features = spec_of(obj, self.disable_auto_prefix)
            if self.check is not None:
                self.check(node, labels, features)
        except ValueError as err:
            log.error("NodeFeature %s/%s: %s (object ignored)", key[0], key[1], err)
            return self._put(key, _Obj(node, {}, (), b"!", ok=False))
        kept = _origins_of(key, meta)
        digest = _digest(labels, features.SerializeToString(deterministic=True) + kept)
        with self._lock:
            old = self._objs.get(key)
        if old is not None and old.node == node and old.digest == digest:
            return set()  # a resend: nothing to pack
        entry = _Obj(
            node, PARTS.labels(labels), PARTS.pack_features(features), digest, origins=kept
        )
        return self._put(key, entry)

    def _put(self, key: Key, new: _Obj) -> set[str]:
        with self._lock:
            old = self._objs.get(key)
            if old is not None and old.node == new.node and old.digest == new.digest:
                return set()
            self._drop_locked(key)
            self._objs[key] = new
            if new.node:
                self._by_node.setdefault(new.node, set()).add(key)
        return {n for n in (old.node if old else "", new.node) if n}

    def remove(self, key: Key) -> set[str]:
        with self._lock:
            old = self._drop_locked(key)
        return {old.node} if old is not None and old.node else set()

    def _drop_locked(self, key: Key) -> _Obj | None:
        old = self._objs.pop(key, None)
        if old is not None and old.node:
            keys = self._by_node.get(old.node)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_node[old.node]
        return old

    def retain(self, keys: set[Key]) -> set[str]:
        """Drop every object not in ``keys`` (after a relist); the nodes affected."""
        with self._lock:
            gone = [k for k in self._objs if k not in keys]
        out: set[str] = set()
        for key in gone:
            out |= self.remove(key)
        return out


class NodeFeatureWatcher(ListWatcher):
    """A paginated list (``page_size`` objects a page; 0: no pagination) and a watch of
    NodeFeature objects in all namespaces, resumed from the last resourceVersion when the
    server ends it, relisted only when that version expired (410). ``on_change(nodes)``
    gets the nodes whose merged input changed; ``on_sync(nodes, first)`` after every
    (re)list, with the nodes changed by it (all of them after the first list)."""

    what = "NodeFeature"
    thread_name = "nfd-nodefeature-watch"
    optional = True

    def __init__(
        self,
        api_client: Any,
        store: NodeFeatureStore,
        on_change: Callable[[set[str]], None],
        on_sync: Callable[[set[str], bool], None],
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        watch_seconds: int = 300,
    ) -> None:
        from kubernetes import client

        super().__init__(page_size=page_size, watch_seconds=watch_seconds, synced=store.synced)
        self.api: Any = client.CustomObjectsApi(api_client)
        self.store = store
        self.on_change, self.on_sync = on_change, on_sync
        self._list_changed: set[str] = set()

    def request(self, **kwargs: Any) -> Any:
        return self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

    def listed(self, obj: dict[str, Any]) -> None:
        self._list_changed |= self.store.upsert(obj)

    def relisted(self, keys: set[Key], first: bool) -> None:
        changed, self._list_changed = self._list_changed, set()
        changed |= self.store.retain(keys)
        self.store.synced.set()
        self.on_sync(self.store.nodes() | changed if first else changed, first)

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            nodes = self.store.remove(key_of(obj))
        else:
            nodes = self.store.upsert(obj)
        if nodes:
            self.on_change(nodes)


class NodeFeatureGC:
    """Deletes NodeFeature objects whose Node is gone (upstream ships this as nfd-gc):
    those of a Node when its deletion is seen, and, once both the Node and the
    NodeFeature watches have listed and then every ``interval`` seconds, every object
    whose node-name label names no existing Node or is missing (as nfd-gc). Only while
    ``is_leader()``; nothing on a standby replica."""

    def __init__(
        self,
        api_client: Any,
        store: NodeFeatureStore,
        known_nodes: Callable[[], set[str] | None],
        is_leader: Callable[[], bool],
        *,
        interval: float = 3600.0,
        on_deleted: Callable[[], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        from kubernetes import client

        self.api: Any = client.CustomObjectsApi(api_client)
        self.store = store
        self.known_nodes = known_nodes
        self.is_leader = is_leader
        self.interval = interval
        self.on_deleted, self.on_error = on_deleted, on_error
        self.deleted = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name="nfd-nodefeature-gc", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def node_deleted(self, node: str) -> None:
        with self._lock:
            self._pending.add(node)
        self._wake.set()

    def delete(self, key: Key) -> bool:
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, key[0], PLURAL, key[1])
        except Exception as err:  # noqa: BLE001 - logged and counted; next pass retries
            if getattr(err, "status", None) == 404:
                return False
            log.error("cannot delete NodeFeature %s/%s: %s", key[0], key[1], err)
            if self.on_error is not None:
                self.on_error()
            return False
        log.info("NodeFeature %s/%s deleted: its Node is gone", key[0], key[1])
        self.deleted += 1
        if self.on_deleted is not None:
            self.on_deleted()
        return True

    def collect(self) -> int:
        """One full pass; the number of objects deleted."""
        known = self.known_nodes()
        if known is None or not self.store.synced.is_set():
            return 0
        stale = [key for key, node in self.store.keys().items() if node not in known]
        return sum(self.delete(key) for key in sorted(stale))

    def _run(self) -> None:
        last = None  # time of the last full pass as leader
        while not self._stop.is_set():
            self._wake.wait(2.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                pending, self._pending = self._pending, set()
            if not self.is_leader():
                last = None  # a new leader starts with a full pass
                continue
            try:
                known = self.known_nodes() or set()
                for node in sorted(pending):
                    if node not in known:
                        for key in self.store.objects_of(node):
                            self.delete(key)
                now = time.monotonic()
                ready = self.known_nodes() is not None and self.store.synced.is_set()
                if ready and (last is None or now - last >= self.interval):
                    last = now
                    count = self.collect()
                    log.info("NodeFeature garbage collection: %d objects deleted", count)
            except Exception as err:  # noqa: BLE001 - API down: the next pass retries
                log.warning("NodeFeature garbage collection: %s", err)
