"""NodeFeatureGroup objects (nfd.k8s-sigs.io/v1alpha1, feature gate NodeFeatureGroupAPI):
``status.nodes`` lists the Nodes whose merged features match any of the group's
``spec.featureGroupRules``, as upstream v0.19's nfd-master maintains it.

What upstream v0.19 does, and this module does too:

- Only groups in the master's namespace get a status (upstream looks each one up there).
- A node is a member when one of the group's rules matches its features (its worker's
  gRPC features merged with its NodeFeature objects, as for labels); the rules run in
  order and a rule's ``vars`` feed ``rule.matched`` for the rules after it, on a copy of
  the node's features per group. A rule that fails to evaluate is skipped.
- ``status.nodes`` is ``[{"name": node}, ...]`` in node-name order, written through the
  status subresource only when it differs (no status and no member is no change), and
  only by the leader.

Where it differs (docs/compatibility.md): upstream re-evaluates every group over every
node after any NodeFeature change; here each node's membership is kept (one set of node
names per group), so a node's change costs one evaluation of each group's rules on that
node and a write only for the groups whose member list changed; a new or changed group
costs one evaluation over every node. A node deleted leaves every group at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd._proto import v1alpha1_pb2
from nfd.features import Features
from nfd.master.watch import Key, ListWatcher, key_of
from nfd.wire import features_from_proto

log = logging.getLogger("nfd-master")

GROUP, VERSION, PLURAL = "nfd.k8s-sigs.io", "v1alpha1", "nodefeaturegroups"
GATE = "NodeFeatureGroupAPI"
# Changes that arrive together (a NodeFeature list, a group over many nodes) go out as
# one write per group after this many seconds.
WRITE_DELAY = 0.05
# After a restart the master knows a gRPC worker's features only once the worker has
# reconnected (its backoff is at most 30 s): until this many seconds after the first
# complete list, a node the status names and whose features are not known yet stays.
UNKNOWN_GRACE = 60.0


def gate_enabled(gates: Any) -> bool:
    """The NodeFeatureGroupAPI feature gate: off by default, as in upstream v0.19 (alpha)."""
    if isinstance(gates, Mapping):
        return bool(gates.get(GATE, False))
    return False


def load_group_rules(obj: Mapping[str, Any], on_error: Callable[[str], None]) -> list[Any]:
    """The group's rules in order; one that does not load is reported and left out."""
    from nfd.rules import RuleError
    from nfd.rules.schema import parse_rule

    meta = obj.get("metadata") or {}
    origin = f"NodeFeatureGroup {meta.get('namespace', '')}/{meta.get('name', '?')}"
    spec = obj.get("spec")
    raw = spec.get("featureGroupRules") if isinstance(spec, Mapping) else None
    if not isinstance(raw, list):
        on_error(f"{origin}: spec.featureGroupRules: expected a list")
        return []
    rules: list[Any] = []
    for index, item in enumerate(raw):
        try:
            rules.extend(parse_rule(item, f"{origin}: spec.featureGroupRules[{index}]", origin))
        except RuleError as err:
            on_error(str(err))
    return rules


def group_matches(rules: list[Any], features: Features) -> bool:
    """Whether any of ``rules`` matches (each sees the vars of the rules before it)."""
    if not rules:
        return False
    from nfd.rules import execute_rules

    out = execute_rules(rules, features, resolve_dynamic=False)
    return bool(out.matched_rules)


def status_names(obj: Mapping[str, Any]) -> list[str]:
    """The node names in an object's ``status.nodes`` ([] when it has no status)."""
    status = obj.get("status")
    nodes = status.get("nodes") if isinstance(status, Mapping) else None
    if not isinstance(nodes, list):
        return []
    return [str(n.get("name", "")) for n in nodes if isinstance(n, Mapping)]


@dataclass
class _Group:
    spec: Any  # the object's spec as last seen: a change means re-evaluation
    rules: list[Any]
    observed: list[str]  # status.nodes on the API, as last seen or written
    members: set[str] = field(default_factory=set)


class NodeFeatureGroups:
    """Membership of every group, kept current from node feature changes.

    ``inputs()`` yields (node, features) for every existing node with features; it is
    read when a group is added or its spec changes. Every method is thread-safe; the
    evaluation runs under one lock so a node's change and a group's change never race.
    """

    def __init__(
        self,
        inputs: Callable[[], Iterable[tuple[str, v1alpha1_pb2.Features | None]]],
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._inputs = inputs
        self._on_error = on_error or (lambda message: log.error("%s", message))
        self._lock = threading.Lock()
        self._groups: dict[str, _Group] = {}
        self._seen: set[str] = set()  # nodes whose features (or absence) are known
        self._tracking = True  # _seen is kept until the grace is over
        self._hold_until: float | None = None  # keep unknown members until then
        self.changed = threading.Event()  # set when some group may need a write
        self.evaluations = 0  # rule-set evaluations (one group on one node), for tests

    def __len__(self) -> int:
        with self._lock:
            return len(self._groups)

    # -- groups ---------------------------------------------------------------------

    def set_group(self, obj: Mapping[str, Any]) -> None:
        """A group was listed, added or changed (its status included)."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        spec = obj.get("spec")
        with self._lock:
            current = self._groups.get(name)
            if current is not None and current.spec == spec:
                current.observed = status_names(obj)
            else:
                rules = load_group_rules(obj, self._on_error)
                group = _Group(spec, rules, status_names(obj))
                for node, proto in self._inputs():
                    if proto is None:
                        continue
                    if self._tracking:
                        self._seen.add(node)
                    if self._matches(rules, features_from_proto(proto)):
                        group.members.add(node)
                self._groups[name] = group
                log.info(
                    "NodeFeatureGroup %s: %d rules, %d matching nodes",
                    name,
                    len(rules),
                    len(group.members),
                )
        self.changed.set()

    def remove_group(self, name: str) -> None:
        with self._lock:
            self._groups.pop(name, None)

    def retain(self, names: set[str]) -> None:
        """After a relist: forget the groups that are gone."""
        with self._lock:
            for name in [n for n in self._groups if n not in names]:
                del self._groups[name]

    # -- nodes ------------------------------------------------------------------------

    def node_features(self, node: str, proto: v1alpha1_pb2.Features | None) -> None:
        """The node's merged features now (None: it has none and belongs to no group)."""
        with self._lock:
            if self._tracking:
                self._seen.add(node)
            if not self._groups:
                return
            features = features_from_proto(proto) if proto is not None else None
            changed = False
            for group in self._groups.values():
                member = features is not None and self._matches(group.rules, features)
                if member != (node in group.members):
                    changed = True
                    if member:
                        group.members.add(node)
                    else:
                        group.members.discard(node)
        if changed:
            self.changed.set()

    def node_gone(self, node: str) -> None:
        self.node_features(node, None)

    def _matches(self, rules: list[Any], features: Features) -> bool:
        self.evaluations += 1
        try:
            return group_matches(rules, features)
        except Exception as err:  # noqa: BLE001 - a broken group must not stop the node
            self._on_error(f"NodeFeatureGroup evaluation failed: {err}")
            return False

    # -- status -------------------------------------------------------------------------

    def members(self, name: str) -> list[str] | None:
        with self._lock:
            group = self._groups.get(name)
            return None if group is None else sorted(group.members)

    def hold_unknown(self, seconds: float) -> None:
        """From now on for ``seconds``, a member in a status whose node's features are not
        known yet stays (see UNKNOWN_GRACE); called once, when everything is listed."""
        with self._lock:
            if self._hold_until is None:
                self._hold_until = time.monotonic() + seconds

    def in_grace(self) -> bool:
        """While (or just after) unknown members are kept: the status is compared every
        second then, so the grace's end is written without another change."""
        with self._lock:
            until = self._hold_until
        return until is not None and time.monotonic() < until + 2.0

    def pending(self, now: float | None = None) -> list[tuple[str, list[str]]]:
        """(group, node names) for each group whose status differs from what it should be:
        its members (and, during the grace, the listed nodes not known yet)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            holding = self._hold_until is not None and now < self._hold_until
            if not holding and self._hold_until is not None and self._tracking:
                self._tracking, self._seen = False, set()  # needed only during the grace
            out = []
            for name, group in sorted(self._groups.items()):
                kept = group.members
                if holding:
                    kept = kept | {n for n in group.observed if n not in self._seen}
                want = sorted(kept)
                if want != group.observed:
                    out.append((name, want))
            return out

    def written(self, name: str, nodes: list[str]) -> None:
        with self._lock:
            group = self._groups.get(name)
            if group is not None:
                group.observed = list(nodes)


def status_body(nodes: list[str]) -> dict[str, Any]:
    """The merge patch for ``status.nodes`` (the whole list: a merge patch replaces it)."""
    return {"status": {"nodes": [{"name": n} for n in nodes]}}


class NodeFeatureGroupWatcher(ListWatcher):
    """A list and watch of the NodeFeatureGroups in ``namespace`` into ``groups``, and the
    writer of their ``status.nodes``: only while ``leading()`` and once ``ready()`` (every
    Node and NodeFeature listed, so no member is missing only because it is not known yet).
    """

    what = "NodeFeatureGroup"
    thread_name = "nfd-group-watch"
    optional = True

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        groups: NodeFeatureGroups,
        *,
        leading: Callable[[], bool],
        ready: Callable[[], bool],
        on_write: Callable[[], None] | None = None,
        watch_seconds: int = 300,
        unknown_grace: float = UNKNOWN_GRACE,
    ) -> None:
        from kubernetes import client

        super().__init__(watch_seconds=watch_seconds)
        self.api: Any = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.unknown_grace = unknown_grace
        self.groups = groups
        self.leading, self.ready = leading, ready
        self.on_write = on_write or (lambda: None)
        self.writes = 0

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._write_loop, name="nfd-group-status", daemon=True).start()

    def stop(self) -> None:
        super().stop()
        self.groups.changed.set()

    # -- watch --------------------------------------------------------------------------

    def request(self, **kwargs: Any) -> Any:
        return self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, **kwargs
        )

    def listed(self, obj: dict[str, Any]) -> None:
        self.groups.set_group(obj)

    def relisted(self, keys: set[Key], first: bool) -> None:
        self.groups.retain({name for _, name in keys})
        self.synced.set()
        self.groups.changed.set()

    def changed(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self.groups.remove_group(key_of(obj)[1])
        else:
            self.groups.set_group(obj)

    # -- status writes ----------------------------------------------------------------

    def _write_loop(self) -> None:
        changed = self.groups.changed
        was_leading = False
        while not self._stop.is_set():
            changed.wait(1.0)
            if self._stop.is_set():
                return
            leading = self.leading()
            if not leading or not self.ready():
                was_leading = leading and was_leading
                continue
            self.groups.hold_unknown(self.unknown_grace)
            woke = changed.is_set() or not was_leading
            if not woke and not self.groups.in_grace():
                continue  # nothing changed: nothing to compare
            if woke:
                self._stop.wait(WRITE_DELAY)  # let a burst of changes settle
            changed.clear()
            was_leading = True
            if not self.flush():
                self._stop.wait(1.0)  # a write failed: it is tried again

    def flush(self) -> bool:
        """Write every status that differs; False if a write failed."""
        ok = True
        for name, nodes in self.groups.pending():
            try:
                self.api.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    name,
                    status_body(nodes),
                    _content_type="application/merge-patch+json",
                )
            except Exception as err:  # noqa: BLE001 - retried on the next round
                if getattr(err, "status", None) == 404:
                    self.groups.remove_group(name)
                    continue
                log.warning("NodeFeatureGroup %s: writing status: %s", name, err)
                ok = False
                continue
            self.groups.written(name, nodes)
            self.writes += 1
            self.on_write()
            log.info("NodeFeatureGroup %s: status.nodes %s", name, _short(nodes))
        if not ok:
            self.groups.changed.set()
        return ok


def _short(nodes: list[str], most: int = 10) -> str:
    shown = ", ".join(nodes[:most])
    return f"[{shown}{', ...' if len(nodes) > most else ''}] ({len(nodes)})"
