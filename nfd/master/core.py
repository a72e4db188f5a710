"""The master's per-node pipeline, independent of transport and of the Kubernetes API.

``handle_update`` is called for every SetLabels call and every stream Update. It
short-circuits unchanged resends (digest of the request), otherwise applies
NodeFeatureRules and the label policy, and queues the node for writing. Per node the
master keeps only a digest, a compressed copy of the last request (to re-evaluate
rules without the worker; its feature sets shared with the nodes that have the same,
nfd.master.packed) and a few flags: never the parsed features.

State is bounded (docs in ``Master``): names are checked before anything is kept;
with a Node watch (``set_known_nodes``) only Nodes that exist have state, and a
deleted Node's state goes with it; each update is checked against ``UpdateBudget``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nfd import origins
from nfd._proto import labeler_pb2, v1alpha1_pb2
from nfd.gpu.marking import GPU_HARDWARE_FEATURES, features_show_nvidia_gpu
from nfd.labels import node_name_error
from nfd.master.metrics import MasterMetrics
from nfd.master.nodefeatures import NodeFeatureStore, NodeInput, merge_features_into
from nfd.master.packed import PARTS, PackedRequest
from nfd.master.policy import (
    Desired,
    PolicyConfig,
    Rejection,
    build_desired,
    needs_features,
    prefix_names,
)
from nfd.master.queue import NodeGone, NodeQueue, Permanent
from nfd.wire import MAX_LABELS, features_from_proto

if TYPE_CHECKING:
    from nfd.master.groups import NodeFeatureGroups

log = logging.getLogger("nfd-master")


# Without a Node watch (``--no-publish`` without an API, or before the first list) the
# master cannot tell made-up names from real ones: it keeps at most this many nodes,
# forgetting the oldest first.
MAX_UNTRACKED_NODES = 10_000
# Updates of one node are computed one at a time (a worker's update and a NodeFeature
# change racing could otherwise queue the older input last); nodes share these locks.
NODE_LOCK_STRIPES = 64


class InvalidUpdate(ValueError):
    """An update the master refuses as a whole (bad node name, over a size budget);
    the message says why and goes back to the worker as INVALID_ARGUMENT."""


class UnknownNode(InvalidUpdate):
    """The update is for a Node that does not exist (per the master's Node watch)."""


@dataclass(frozen=True)
class UpdateBudget:
    """What one update may carry. Over any of it the whole update is refused with an
    InvalidUpdate naming the budget, and nothing is kept. The master keeps only a
    node's last update, so these also bound what it holds per node."""

    max_labels: int = MAX_LABELS
    # Characters of label names and values. A Node object is at most 1.5 MiB in etcd,
    # so more than this could never be written anyway.
    max_label_bytes: int = 1 << 20
    # Serialized raw features: the largest machines (kernel config with ~10,000
    # options, long PCI and USB lists) stay under 1 MiB.
    max_feature_bytes: int = 4 << 20
    # The compressed copy of the update kept to re-evaluate rules without the worker.
    max_state_bytes: int = 1 << 20

    def check(
        self, node: str, labels: Mapping[str, str], features: v1alpha1_pb2.Features | None
    ) -> None:
        if len(labels) > self.max_labels:
            raise InvalidUpdate(
                f"update for node {node}: {len(labels)} labels, over the per-node budget "
                f"of {self.max_labels} labels"
            )
        size = sum(len(k) + len(v) for k, v in labels.items())
        if size > self.max_label_bytes:
            raise InvalidUpdate(
                f"update for node {node}: labels of {size} bytes, over the per-node budget "
                f"of {self.max_label_bytes} bytes of label names and values"
            )
        if features is not None:
            size = features.ByteSize()
            if size > self.max_feature_bytes:
                raise InvalidUpdate(
                    f"update for node {node}: raw features of {size} bytes, over the per-node "
                    f"budget of {self.max_feature_bytes} bytes"
                )


@dataclass
class WorkItem:
    desired: Desired
    allow_remove: bool


@dataclass
class _NodeState:
    digest: bytes = b""
    rules_generation: int = -1
    # The last changed request, its feature sets shared with other nodes; None: none yet.
    kept: PackedRequest | None = None
    fresh: bool = False  # holds the worker's current state (stream live or unary)
    rejections: bytes = b""  # digest of the rejections last logged for the node
    # nfd.origins.pack of the local labels' files and hooks the worker's last changed
    # update named (b"": none, or an upstream worker); only /explain reads it.
    origins: bytes = b""


@dataclass
class _RuleReport:
    """A rule that failed, reported once until it changes; ``blown``: it exceeded its
    evaluation budget and is skipped on every node."""

    rule: Any
    blown: bool


@dataclass
class Result:
    labels: dict[str, str] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)
    unchanged: bool = False


def message_digest(msg: Any) -> bytes:
    """Digest of a whole request (Update with seq cleared, or SetLabelsRequest):
    serializing in C is ~3x faster than walking a 100-label map in Python."""
    seq = getattr(msg, "seq", None)
    if seq:
        msg.seq = 0
    try:
        data = msg.SerializeToString(deterministic=True)
    finally:
        if seq:
            msg.seq = seq
    return hashlib.blake2b(data, digest_size=16).digest()


def request_digest(labels: Mapping[str, str], features: v1alpha1_pb2.Features | None) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for k, v in sorted(labels.items()):
        h.update(k.encode())
        h.update(b"\0")
        h.update(v.encode())
        h.update(b"\1")
    if features is not None:
        h.update(features.SerializeToString(deterministic=True))
    return h.digest()


def _rule_key(rule: Any) -> tuple[str, str]:
    return (str(getattr(rule, "origin", "")), str(getattr(rule, "name", "")))


def _is_budget_failure(message: str, err: BaseException | None = None) -> bool:
    """Whether a rule failed for exceeding its evaluation budget (the engine's
    RuleBudgetExceeded: "<origin>: rule 'x' failed: exceeded its evaluation budget ...")."""
    if err is not None and type(err).__name__ == "RuleBudgetExceeded":
        return True
    _, sep, rest = message.partition(" failed: ")
    return bool(sep) and rest.startswith("exceeded its evaluation budget")


def _rule_of(message: str, rules: Iterable[Any], name: str | None = None) -> Any:
    """The rule an engine error is about: its messages start with the rule's origin
    and name ("NodeFeatureRule x: rule 'y' failed: ...")."""
    fallback = None
    for rule in rules:
        if name is not None and rule.name != name:
            continue
        if rule.origin and message.startswith(f"{rule.origin}: rule {rule.name!r}"):
            return rule
        if fallback is None and (name is not None or f"rule {rule.name!r}" in message):
            fallback = rule
    return fallback


class _MemoryTrimmer:
    """Returns freed heap to the OS (glibc ``malloc_trim``, after a garbage collection)
    soon after something large was dropped or refused: at most one per ``interval``,
    by a timer, so a flood costs two a second (a few ms each) and its end is trimmed."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._trim = _malloc_trim()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self.trims = 0

    def note(self) -> None:
        if self._trim is None:
            return
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(self.interval, self.trim)
                self._timer.daemon = True
                self._timer.start()

    def trim(self) -> None:
        with self._lock:
            self._timer = None
        if self._trim is not None:
            # Refused requests can sit in reference cycles (an exception's traceback holds
            # the frame that holds the request) that an idle master would not collect.
            gc.collect()
            self._trim(0)
            self.trims += 1


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None  # not glibc (musl has no malloc_trim)
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class Master:
    """Per-node state, bounded:

    - Names are checked (``node_name_error``) before anything is kept or queued.
    - Once ``set_known_nodes`` has been called (the CLI's metadata-only Node watch),
      updates for a Node that does not exist are refused (``UnknownNode``) and keep
      nothing; a deleted Node's state and pending write are dropped; a 404 from the
      API drops the node's state too. A stream open for a nonexistent node keeps only
      its entry in the open-stream count (name -> int) while its updates are refused.
    - Without a Node watch at most MAX_UNTRACKED_NODES nodes, the oldest forgotten.
    - Each update is checked against ``UpdateBudget``.
    - Rule failures are logged once per rule until the rule changes (not per node).
    """

    def __init__(
        self,
        policy: PolicyConfig,
        apply: Callable[[str, WorkItem], object] | None,
        metrics: MasterMetrics | None = None,
        parallelism: int = 10,
        wait_for_rules: bool = False,
        budget: UpdateBudget | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget or UpdateBudget()
        # Until the NodeFeatureRules are listed, a node's desired state lacks
        # the rule outputs: removing anything then would flap rule labels.
        self.rules_listed = not wait_for_rules
        # False on a standby replica under leader election: it refuses workers.
        self.serving: Callable[[], bool] = lambda: True
        # Told about each rule failure once (origin rule, message, blown): the CLI
        # posts an Event on the NodeFeatureRule.
        self.on_rule_failure: Callable[[Any, str, bool], None] | None = None
        self.metrics = metrics or MasterMetrics()
        self._lock = threading.Lock()
        self._nodes: dict[str, _NodeState] = {}
        self._streams: dict[str, int] = {}  # open worker streams per node
        self._known: set[str] | None = None  # Nodes that exist, once watched
        self._rules: list[Any] = []
        self._rules_generation = 0
        self._rule_reports: dict[tuple[str, str], _RuleReport] = {}
        self._trimmer = _MemoryTrimmer()
        self._node_locks = [threading.RLock() for _ in range(NODE_LOCK_STRIPES)]
        # The periodic resync's pass over Nodes without any input (``_clear_idle``):
        # those seen idle at the previous resync, and whether any gRPC worker has
        # sent an update to this master (then that pass never runs).
        self._idle_seen: set[str] = set()
        self._grpc_seen = False
        # NodeFeature objects (the CLI's NodeFeatureWatcher fills it): merged into every
        # node's input after the node's gRPC worker state (docs/compatibility.md).
        self.node_features: NodeFeatureStore | None = None
        # NodeFeatureGroups (gate NodeFeatureGroupAPI): told each node's merged features
        # after it is processed, and of each node that goes.
        self.groups: NodeFeatureGroups | None = None
        self.queue: NodeQueue[WorkItem] | None = None
        if apply is not None:
            self.queue = NodeQueue(
                apply,
                parallelism,
                on_failure=lambda node, err: self.metrics.update_failures.inc(),
                on_permanent=self._dropped,
                merge=_merge_items,
            )

    # -- rules -------------------------------------------------------------------

    def set_rules(self, rules: Iterable[Any]) -> None:
        """New NodeFeatureRule set: re-evaluate every node we hold state for."""
        rules = list(rules)
        with self._lock:
            self._rules = rules
            self._rules_generation += 1
            self.rules_listed = True
            # A failure stays reported (and a blown rule skipped) until the rule changes.
            self._rule_reports = {
                key: rep for key, rep in self._rule_reports.items() if rep.rule in rules
            }
            nodes = list(self._nodes.items())
        log.info(
            "NodeFeatureRules changed (%d rules): re-evaluating %d nodes", len(rules), len(nodes)
        )
        self._reevaluate(nodes)

    def set_policy(self, policy: PolicyConfig) -> None:
        """New label policy (master config reload): re-evaluate every node we hold
        state for. Unlike set_rules this does not mark the rules listed."""
        with self._lock:
            self.policy = policy
            # A node whose re-evaluation below has not run yet is not 'unchanged'.
            self._rules_generation += 1
            nodes = list(self._nodes.items())
        log.info("label policy changed: re-evaluating %d nodes", len(nodes))
        self._reevaluate(nodes)

    def _reevaluate(self, nodes: list[tuple[str, _NodeState]]) -> None:
        for name, st in nodes:
            with self._node_lock(name):
                nf = self._node_input(name)
                if st.kept is None and nf is None:
                    continue
                labels: Mapping[str, str] = {}
                features: v1alpha1_pb2.Features | None = None
                if st.kept is not None:
                    req = st.kept.request()
                    labels, features = dict(req.labels), req.features
                labels, features = _combine(labels, features, nf, self.policy.disable_auto_prefix)
                # A node fed only by NodeFeature objects always has its complete input.
                allow = st.fresh if st.kept is not None else True
                self._process(name, labels, features, st, allow_remove=allow)

    # -- NodeFeature objects ---------------------------------------------------------

    def _node_lock(self, node: str) -> threading.RLock:
        return self._node_locks[hash(node) % NODE_LOCK_STRIPES]

    def _node_input(self, node: str) -> NodeInput | None:
        store = self.node_features
        return store.merged(node) if store is not None else None

    def _node_features_complete(self) -> bool:
        store = self.node_features
        return store is None or store.complete()

    def node_features_changed(self, nodes: Iterable[str]) -> None:
        """NodeFeature objects of ``nodes`` were created, changed or deleted."""
        for node in sorted(nodes):
            why = node_name_error(node)
            if why is not None:
                log.error("NodeFeature objects name node %r: %s (ignored)", node[:256], why)
                continue
            self._apply_node_features(node)

    def node_features_synced(self, nodes: Iterable[str], first: bool) -> None:
        """A NodeFeature (re)list completed. After the first one every node is evaluated
        again: until then no label could be removed (objects not yet listed)."""
        # A list's pages (tens of MB of JSON) are garbage now: give the heap back.
        self._trimmer.note()
        if not first:
            self.node_features_changed(nodes)
            return
        with self._lock:
            states = list(self._nodes.items())
        log.info("NodeFeature objects listed: evaluating %d nodes", len(states))
        self._reevaluate(states)
        self.node_features_changed(set(nodes) - {name for name, _ in states})

    def _apply_node_features(self, node: str) -> None:
        with self._node_lock(node):
            with self._lock:
                if self._known is not None and node not in self._known:
                    return  # no such Node: nothing to label (its objects are garbage)
                st = self._nodes.get(node)
            nf = self._node_input(node)
            if st is None and nf is None:
                return
            labels: Mapping[str, str] = {}
            features: v1alpha1_pb2.Features | None = None
            if st is not None and st.kept is not None:
                req = st.kept.request()
                labels, features = dict(req.labels), req.features
            labels, features = _combine(labels, features, nf, self.policy.disable_auto_prefix)
            if st is None:
                with self._lock:
                    st = self._state(node)
            # The worker's last complete state (if any) is part of the input, so only
            # what NodeFeature objects or rules no longer give can go.
            self._process(node, labels, features, st, allow_remove=True)
            if nf is None and st.kept is None:
                with self._lock:
                    if self._nodes.get(node) is st:
                        del self._nodes[node]
                        self.metrics.node_states.set(len(self._nodes))

    def resync(self) -> None:
        """Re-evaluate and re-apply every node from its cached state (--resync-period):
        restores labels someone removed by hand. Then clear what NFD owns on Nodes that
        have had no input for two resyncs in a row (``_clear_idle``)."""
        with self._lock:
            rules = list(self._rules)
        self.set_rules(rules)
        self._clear_idle()

    def idle_nodes(self) -> set[str]:
        """Existing Nodes the master has no input for: no gRPC worker state and no
        NodeFeature object that counts. Empty unless that can be known (Nodes and every
        NodeFeature listed, rules listed) and no gRPC worker was ever seen."""
        store = self.node_features
        with self._lock:
            if (
                store is None
                or self._known is None
                or self._grpc_seen
                or not self.rules_listed
                or not store.complete()
            ):
                return set()
            candidates = self._known - set(self._nodes)
        return {n for n in candidates if store.merged(n) is None}

    def _clear_idle(self) -> None:
        """Upstream v0.19's periodic resync evaluates every Node: one whose NodeFeature
        objects all vanished while no master ran (so no deletion was ever seen) loses
        its NFD labels at the first resync after the one that found it without objects
        (upstream's processedOnce). Here only while no gRPC worker has ever sent to this
        master: a v0.16-style worker that is down leaves its labels, as upstream v0.16.
        Nodes that own nothing get no write (the patch is empty)."""
        idle = self.idle_nodes()
        with self._lock:
            due, self._idle_seen = idle & self._idle_seen, idle
        if due:
            log.info("resync: %d nodes without any input: clearing what NFD owns", len(due))
        for node in sorted(due):
            with self._node_lock(node):
                with self._lock:
                    if node in self._nodes or self._grpc_seen:
                        continue
                if self._node_input(node) is not None:
                    continue
                # As upstream's NodeFeatureGroups, a node without features is in none.
                self._process(node, {}, None, _NodeState(), allow_remove=True, groups=False)

    # -- which Nodes exist -----------------------------------------------------------

    def set_known_nodes(self, names: Iterable[str]) -> None:
        """The Nodes that exist (a full list): state of any other node is dropped."""
        with self._lock:
            self._known = set(names)
            gone = [n for n in self._nodes if n not in self._known]
        for name in gone:
            self.forget(name)
            if self.queue is not None:
                self.queue.discard(name)
        if gone:
            log.info("dropped the state of %d nodes that have no Node object", len(gone))
        store = self.node_features
        if store is not None:
            with self._lock:
                waiting = [n for n in store.nodes() if n in self._known and n not in self._nodes]
            self.node_features_changed(waiting)

    def known_nodes(self) -> set[str] | None:
        """The Nodes that exist, or None before the first Node list."""
        with self._lock:
            return None if self._known is None else set(self._known)

    def node_added(self, name: str) -> None:
        with self._lock:
            if self._known is not None:
                self._known.add(name)
        store = self.node_features
        if store is not None and store.has(name):
            self.node_features_changed([name])

    def node_deleted(self, name: str) -> None:
        with self._lock:
            if self._known is not None:
                self._known.discard(name)
        if self.groups is not None:
            self.groups.node_gone(name)
        if self.forget(name):
            log.info("node %s deleted: its state dropped", name)
        if self.queue is not None:
            self.queue.discard(name)

    def forget(self, name: str) -> bool:
        """Drop what the master holds for ``name``; False if it held nothing."""
        with self._lock:
            st = self._nodes.pop(name, None)
            self.metrics.node_states.set(len(self._nodes))
        if self.groups is not None:
            self.groups.node_gone(name)
        if st is None:
            return False
        self._trimmer.note()
        return True

    def _dropped(self, node: str, err: Permanent) -> None:
        self.metrics.updates_dropped.inc()
        if isinstance(err, NodeGone):
            self.forget(node)

    def _state(self, node: str) -> _NodeState:
        """The node's state, created if needed (caller holds the lock)."""
        st = self._nodes.get(node)
        if st is None:
            st = self._nodes[node] = _NodeState()
            if self._known is None and len(self._nodes) > MAX_UNTRACKED_NODES:
                del self._nodes[next(iter(self._nodes))]
            self.metrics.node_states.set(len(self._nodes))
        return st

    def node_inputs(self) -> Iterator[tuple[str, v1alpha1_pb2.Features | None]]:
        """(node, merged features) of every existing node the master has input for:
        what NodeFeatureGroups are evaluated on when a group is added or changed. Takes
        no node lock (the caller may hold the groups' lock)."""
        store = self.node_features
        with self._lock:
            known = None if self._known is None else set(self._known)
            kept = {name: st.kept for name, st in self._nodes.items()}
        names = set(kept) | (store.nodes() if store is not None else set())
        for name in sorted(names):
            if known is not None and name not in known:
                continue
            features: v1alpha1_pb2.Features | None = None
            packed = kept.get(name)
            if packed is not None:
                features = packed.request().features
            _, features = _combine(
                {}, features, self._node_input(name), self.policy.disable_auto_prefix
            )
            yield name, features

    # -- connections -------------------------------------------------------------

    def stream_opened(self, node: str) -> None:
        with self._lock:
            self._streams[node] = self._streams.get(node, 0) + 1
        self.metrics.connected_workers.inc()

    def stream_closed(self, node: str) -> None:
        with self._lock:
            left = self._streams.pop(node, 0) - 1
            if left > 0:
                self._streams[node] = left
            else:
                st = self._nodes.get(node)
                if st is not None:
                    # Until the worker is back, a rule change may add but not remove.
                    st.fresh = False
        self.metrics.connected_workers.dec()

    def node_names(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    # -- updates -----------------------------------------------------------------

    def _refuse(self, reason: str, err: InvalidUpdate, large: bool = False) -> InvalidUpdate:
        self.metrics.updates_refused.labels(reason).inc()
        if large:
            # The refused request is freed after the call: give it back in floods.
            self._trimmer.note()
        return err

    def check_update(
        self, node: str, labels: Mapping[str, str], features: v1alpha1_pb2.Features | None
    ) -> None:
        """Raise InvalidUpdate if the update is refused as a whole (name, budget)."""
        why = node_name_error(node)
        if why is not None:
            raise self._refuse("invalid-node-name", InvalidUpdate(why))
        try:
            self.budget.check(node, labels, features)
        except InvalidUpdate as err:
            raise self._refuse("over-budget", err, large=True) from None

    def handle_update(
        self,
        node: str,
        labels: Mapping[str, str],
        features: v1alpha1_pb2.Features | None,
        *,
        full: bool = True,
        digest: bytes | None = None,
        local_origins: tuple[origins.Origins, int] | None = None,
    ) -> Result:
        """One update from a worker (full = the worker's complete current state).
        ``digest`` identifies the content (default: computed from labels and features;
        it must cover ``local_origins``, the bounded files and hooks of its local
        labels, nfd.origins). Raises InvalidUpdate (UnknownNode for a Node that does not
        exist)."""
        self.metrics.update_requests.inc()
        self.check_update(node, labels, features)
        self._grpc_seen = True
        if digest is None:
            digest = request_digest(labels, features)
            if local_origins is not None:
                packed_origins = origins.pack(*local_origins)
                digest = hashlib.blake2b(digest + packed_origins, digest_size=16).digest()
        with self._lock:
            unknown = self._known is not None and node not in self._known
            st = self._nodes.get(node)
            unchanged = (
                st is not None
                and st.digest == digest
                and st.rules_generation == self._rules_generation
            )
            if unchanged and st is not None and full:
                st.fresh = True
        if unknown:
            raise self._refuse(
                "unknown-node",
                UnknownNode(f"node {node} does not exist (no Node object of that name)"),
                large=True,
            )
        if unchanged:
            self.metrics.patches_skipped.inc()
            return Result(unchanged=True)
        req = labeler_pb2.SetLabelsRequest(labels=labels)
        if features is not None:
            req.features.CopyFrom(features)
        packed = PARTS.pack_request(req)
        del req
        kept = origins.pack(*local_origins) if local_origins is not None else b""
        if packed.size > self.budget.max_state_bytes:
            raise self._refuse(
                "over-budget",
                InvalidUpdate(
                    f"update for node {node}: {packed.size} bytes compressed, over the per-node "
                    f"state budget of {self.budget.max_state_bytes} bytes"
                ),
                large=True,
            )
        with self._node_lock(node):
            with self._lock:
                st = self._state(node)
                if full:
                    st.fresh = True
            labels, features = _combine(
                labels, features, self._node_input(node), self.policy.disable_auto_prefix
            )
            return self._process(
                node,
                labels,
                features,
                st,
                allow_remove=st.fresh,
                digest=digest,
                packed=packed,
                kept_origins=kept,
            )

    def _process(
        self,
        node: str,
        labels: Mapping[str, str],
        features: v1alpha1_pb2.Features | None,
        st: _NodeState,
        *,
        allow_remove: bool,
        digest: bytes | None = None,
        packed: PackedRequest | None = None,
        groups: bool = True,
        kept_origins: bytes = b"",
    ) -> Result:
        with self._lock:
            rules, generation = self._rules, self._rules_generation
            allow_remove = allow_remove and self.rules_listed
        # Until every NodeFeature object is listed, a node's input may lack some.
        allow_remove = allow_remove and self._node_features_complete()
        rule_output = None
        if rules:
            rule_output, rules_ok = self._run_rules(node, rules, features)
            # While a rule failed on this node its labels are missing from the desired
            # state: removing then would take them off the node for a moment.
            allow_remove = allow_remove and rules_ok
        feats = None
        if needs_features(labels) and features is not None:
            feats = features_from_proto(features)  # @domain.feature.element values
        desired, rejected = build_desired(labels, self.policy, rule_output, feats)
        desired.gpu_hardware = shows_nvidia_gpu(features)
        for rej in rejected:
            self.metrics.count_rejection(rej.kind)
        self._log_rejections(node, st, rejected)
        with self._lock:
            if digest is not None:
                st.digest, st.kept, st.origins = digest, packed, kept_origins
            st.rules_generation = generation
        self.submit(node, WorkItem(desired, allow_remove))
        if self.groups is not None and groups:
            self.groups.node_features(node, features)
        return Result(labels=desired.labels, rejected=rejected)

    def _log_rejections(self, node: str, st: _NodeState, rejected: list[Rejection]) -> None:
        """Log a node's rejections when they change (not on every resend): the memory
        of what was logged is one digest per node."""
        h = hashlib.blake2b(digest_size=8)
        for rej in rejected:
            h.update(f"{rej.kind}\0{rej.name}\0{rej.reason}\1".encode())
        digest = h.digest() if rejected else b""
        with self._lock:
            if digest == st.rejections:
                return
            st.rejections = digest
        for rej in rejected[:20]:
            log.warning("node %s: %s %s rejected: %s", node, rej.kind, rej.name, rej.reason)
        if len(rejected) > 20:
            log.warning("node %s: %d more rejected", node, len(rejected) - 20)

    def submit(self, node: str, item: WorkItem) -> None:
        if self.queue is None:
            log.info(
                "node %s (--no-publish): would set labels %s, annotations %s, extended "
                "resources %s, taints %s (remove stale: %s)",
                node,
                item.desired.labels,
                item.desired.annotations,
                item.desired.extended_resources,
                [str(t) for t in item.desired.taints],
                item.allow_remove,
            )
            return
        self.queue.put(node, item)

    def _run_rules(
        self, node: str, rules: list[Any], features: v1alpha1_pb2.Features | None
    ) -> tuple[Any, bool]:
        """(rule output or None, whether every rule ran): a rule that fails is
        reported and skipped, the others still apply."""
        import nfd.rules as engine
        from nfd.features import Features

        with self._lock:
            blown = {key for key, rep in self._rule_reports.items() if rep.blown}
        active = [r for r in rules if _rule_key(r) not in blown]
        ok = len(active) == len(rules)
        if not ok:
            self.metrics.rule_failures.labels("skipped").inc(len(rules) - len(active))
        feats = features_from_proto(features) if features is not None else Features()
        began = time.perf_counter()
        try:
            # Each rule runs under the engine's evaluation budget (nfd.rules.EvalBudget).
            out = engine.execute_rules(active, feats)
        except Exception as err:  # noqa: BLE001 - a broken rule must not stop the node
            message = f"NodeFeatureRule evaluation failed: {err}"
            culprit = _rule_of(str(err), active)
            self._rule_failed(node, culprit, message, _is_budget_failure(message, err))
            return None, False
        self.metrics.rule_duration.observe(time.perf_counter() - began)
        failures = self._failures_of(out, active)
        for rule, message in failures:
            self._rule_failed(node, rule, message, _is_budget_failure(message))
        return out, ok and not failures

    @staticmethod
    def _failures_of(out: Any, rules: list[Any]) -> list[tuple[Any, str]]:
        """(rule or None, message) for each rule that failed in ``out``."""
        errors = [str(e) for e in (getattr(out, "errors", None) or [])]
        names = getattr(out, "failed_rules", None)
        if names is None:
            return [(_rule_of(e, rules), e) for e in errors]
        failures = []
        for name in names:
            message = next((e for e in errors if f"rule {name!r}" in e), f"rule {name!r} failed")
            failures.append((_rule_of(message, rules, name), message))
        if errors and not failures:
            failures = [(_rule_of(e, rules), e) for e in errors]
        return failures

    def _rule_failed(self, node: str, rule: Any, message: str, blown: bool) -> None:
        self.metrics.rule_errors.inc()
        self.metrics.rule_failures.labels("budget" if blown else "error").inc()
        key = _rule_key(rule) if rule is not None else ("", "")
        with self._lock:
            previous = self._rule_reports.get(key)
            if previous is not None and (previous.blown or not blown):
                return  # reported already for this version of the rule
            self._rule_reports[key] = _RuleReport(rule, blown)
        if blown:
            log.error(
                "%s (on node %s): skipped on every node until its NodeFeatureRule changes",
                message,
                node,
            )
        else:
            log.warning("%s (on node %s; reported once until the rule changes)", message, node)
        if self.on_rule_failure is not None and rule is not None:
            try:
                self.on_rule_failure(rule, message, blown)
            except Exception as err:  # noqa: BLE001 - reporting must not stop labelling
                log.warning("reporting the failure of rule %s: %s", rule.name, err)

    def explain(
        self, node: str, label: str | None = None, gpu_marking: Any = None
    ) -> dict[str, Any] | None:
        """Why the node has each of its labels (and, with ``label``, why it has or lacks
        that one), evaluated now from the node's kept state: the gRPC worker's last
        request and the node's NodeFeature objects, merged as for labelling. None when
        the master holds neither for the node. Nothing is kept: one decompression and
        one rule evaluation per call."""
        from nfd.features import Features
        from nfd.master.explain import explain_node

        with self._lock:
            st = self._nodes.get(node)
            packed = st.kept if st is not None else None
            kept = st.origins if st is not None else b""
            rules, policy = list(self._rules), self.policy
            blown = {key for key, rep in self._rule_reports.items() if rep.blown}
        store = self.node_features
        nf = self._node_input(node)
        if packed is None and nf is None:
            return None
        grpc_labels: dict[str, str] = {}
        grpc_features: v1alpha1_pb2.Features | None = None
        if packed is not None:
            req = packed.request()
            grpc_labels = dict(req.labels)
            grpc_features = req.features if req.HasField("features") else None
        labels, features = _combine(grpc_labels, grpc_features, nf, policy.disable_auto_prefix)
        feats = features_from_proto(features) if features is not None else Features()
        active = [r for r in rules if _rule_key(r) not in blown]
        doc = explain_node(
            node,
            dict(labels),
            feats,
            active,
            policy,
            label=label,
            gpu_hardware=shows_nvidia_gpu(features),
            gpu_marking=gpu_marking,
            skipped_rules=[r for r in rules if _rule_key(r) in blown],
            label_sources=store.label_sources(node) if store is not None else None,
            grpc_labels=grpc_labels,
            own_object=(store.namespace if store is not None else "", node),
            grpc_origins=_unpack(kept),
            object_origins=(
                store.local_origins((store.namespace, node)) if store is not None else None
            ),
        )
        if store is not None:
            doc["namespace"] = store.namespace  # the master's: NodeFeature names are short in it
        return doc

    def stop(self) -> None:
        if self.queue is not None:
            self.queue.stop()


def _combine(
    labels: Mapping[str, str],
    features: v1alpha1_pb2.Features | None,
    nf: NodeInput | None,
    keep_names: bool = False,
) -> tuple[Mapping[str, str], v1alpha1_pb2.Features | None]:
    """A worker's update with the node's NodeFeature objects merged after it, as if it
    were the first object in upstream's merge order: NodeFeature objects win conflicts.
    ``keep_names``: DisableAutoPrefix (unprefixed names are not prefixed)."""
    if nf is None:
        return labels, features
    out_labels = prefix_names(labels, keep_names)
    out_labels.update(nf.labels)
    out = v1alpha1_pb2.Features()
    if features is not None:
        out.CopyFrom(features)
    merge_features_into(out, nf.features)
    return out_labels, out


def _unpack(blob: bytes) -> tuple[origins.Origins, int] | None:
    try:
        return origins.unpack(blob)
    except (origins.OriginsError, zlib.error):  # kept by us: only a bug gets here
        return None


def shows_nvidia_gpu(features: v1alpha1_pb2.Features | None) -> bool:
    """The worker's raw PCI features show an NVIDIA GPU (input of GPU marking that
    survives any ``deviceLabelFields``). Reads the message without copying it."""
    if features is None:
        return False
    sets = {
        name: [element.attributes for element in features.instances[name].elements]
        for name in GPU_HARDWARE_FEATURES
        if name in features.instances
    }
    return features_show_nvidia_gpu(sets)


def _merge_items(old: WorkItem, new: WorkItem) -> WorkItem:
    # The newest desired state wins; removal is allowed only if the newest allows it.
    return new
