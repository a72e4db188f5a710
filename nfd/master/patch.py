"""Minimal RFC 6902 JSON patches that move a Node towards what NFD wants. Pure.

NFD records what it owns in annotations on the node (reference §7.4):
``nfd.node.kubernetes.io/feature-labels``, ``extended-resources``,
``feature-annotations`` (comma-separated, sorted, default namespace stripped) and
``taints`` (``key=value:Effect``). Only owned items are ever removed or replaced
away; labels written by anyone else are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nfd.master.policy import (
    NFD_ANNOTATION_NS,
    Desired,
    Taint,
    auto_prefix,
    parse_taint,
    strip_default_ns,
)

Op = dict[str, Any]


def annotation_ns(instance: str = "") -> str:
    return f"{instance}.{NFD_ANNOTATION_NS}" if instance else NFD_ANNOTATION_NS


@dataclass(frozen=True)
class TrackingKeys:
    labels: str
    extended_resources: str
    annotations: str
    taints: str

    @classmethod
    def for_instance(cls, instance: str = "") -> TrackingKeys:
        ns = annotation_ns(instance)
        return cls(
            f"{ns}/feature-labels",
            f"{ns}/extended-resources",
            f"{ns}/feature-annotations",
            # Upstream writes the taints annotation without the instance prefix; we keep
            # instances apart so two masters never fight over taints.
            f"{ns}/taints",
        )

    def all(self) -> tuple[str, ...]:
        return (self.labels, self.extended_resources, self.annotations, self.taints)


@dataclass
class Owned:
    labels: set[str] = field(default_factory=set)
    extended_resources: set[str] = field(default_factory=set)
    annotations: set[str] = field(default_factory=set)
    taints: set[Taint] = field(default_factory=set)


def escape(key: str) -> str:
    """JSON pointer escaping of one path segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _split_name(name: str) -> str:
    # "/x" is the unprefixed name x (DisableAutoPrefix); "x" is feature.node.kubernetes.io/x.
    return name[1:] if name.startswith("/") else auto_prefix(name)


def _join_name(name: str) -> str:
    return "/" + name if "/" not in name else strip_default_ns(name)


def _split_names(value: str | None) -> set[str]:
    return {_split_name(n.strip()) for n in (value or "").split(",") if n.strip()}


def _join_names(names: Iterable[str]) -> str:
    """Upstream's format (default namespace stripped). An unprefixed name (feature gate
    DisableAutoPrefix) is written ``/name``: upstream would write ``name``, which reads
    back as ``feature.node.kubernetes.io/name``, so it would never remove the label
    and could remove a label of that name it does not own; ``/name`` is no label name,
    so upstream reading it removes nothing."""
    return ",".join(sorted(_join_name(n) for n in names))


def without_foreign(
    desired: Desired,
    owned: Owned,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    capacity: Mapping[str, str] | None,
) -> Desired:
    """restrictions.allowOverwrite=false: ``desired`` less the labels, feature
    annotations and extended resources already on the node that NFD does not own, so
    they are neither overwritten nor taken over (what NFD owns it still updates)."""

    def keep(
        items: Mapping[str, str], present: Mapping[str, str] | None, mine: set[str]
    ) -> dict[str, str]:
        return {k: v for k, v in items.items() if k in mine or present is None or k not in present}

    return Desired(
        keep(desired.labels, labels, owned.labels),
        keep(desired.annotations, annotations, owned.annotations),
        keep(desired.extended_resources, capacity, owned.extended_resources),
        desired.taints,
        desired.gpu_hardware,
    )


def parse_owned(node: Mapping[str, Any], instance: str = "") -> Owned:
    keys = TrackingKeys.for_instance(instance)
    ann = (node.get("metadata") or {}).get("annotations") or {}
    taints = {parse_taint(t.strip()) for t in (ann.get(keys.taints) or "").split(",") if t.strip()}
    return Owned(
        labels=_split_names(ann.get(keys.labels)),
        extended_resources=_split_names(ann.get(keys.extended_resources)),
        annotations=_split_names(ann.get(keys.annotations)),
        taints={t for t in taints if t is not None},
    )


def _map_ops(
    path: str,
    current: Mapping[str, str] | None,
    wanted: Mapping[str, str],
    remove: Iterable[str],
) -> list[Op]:
    """Ops on one string map: add new keys, replace changed ones, remove ``remove``."""
    ops: list[Op] = []
    if current is None:
        if wanted:
            ops.append({"op": "add", "path": path, "value": dict(sorted(wanted.items()))})
        return ops
    for key in sorted(set(remove)):
        if key in current and key not in wanted:
            ops.append({"op": "remove", "path": f"{path}/{escape(key)}"})
    for key, value in sorted(wanted.items()):
        if key not in current:
            ops.append({"op": "add", "path": f"{path}/{escape(key)}", "value": value})
        elif current[key] != value:
            ops.append({"op": "replace", "path": f"{path}/{escape(key)}", "value": value})
    return ops


def compute_patch(
    node: Mapping[str, Any],
    desired: Desired,
    owned: Owned | None = None,
    *,
    allow_remove: bool = True,
    instance: str = "",
    drop_all_tracking: bool = False,
    allow_overwrite: bool = True,
) -> list[Op]:
    """The JSON patch taking ``node`` (a plain dict as the API returns it) to ``desired``.

    ``owned``: what NFD owned before (default: parsed from the node's annotations).
    ``allow_remove=False``: only add or update, remove nothing (a master that does not
    yet hold the node's fresh state must not take labels away). Ops under ``/status``
    belong to the status subresource (see ``split_patch``). The first op is a ``test``
    of ``metadata.resourceVersion`` so a concurrent writer makes the patch fail instead
    of being overwritten. An empty list means the node is already as wanted.
    ``drop_all_tracking``: also delete the tracking annotations (``--prune``).
    ``allow_overwrite=False`` (restrictions.allowOverwrite): see ``without_foreign``.
    """
    if owned is None:
        owned = parse_owned(node, instance)
    keys = TrackingKeys.for_instance(instance)
    meta = node.get("metadata") or {}
    labels: Mapping[str, str] | None = meta.get("labels")
    annotations: Mapping[str, str] | None = meta.get("annotations")
    status = node.get("status") or {}
    capacity: Mapping[str, str] | None = status.get("capacity")
    allocatable: Mapping[str, str] | None = status.get("allocatable")
    if not allow_overwrite:
        desired = without_foreign(desired, owned, labels, annotations, capacity)

    def keep_owned(
        previous: set[str], present: Mapping[str, str] | None, want: Iterable[str]
    ) -> set[str]:
        """Owned names that stay owned: the wanted ones, plus (without removal) the
        previously owned ones still on the node."""
        out = set(want)
        if not allow_remove:
            out |= {n for n in previous if present is not None and n in present}
        return out

    ops: list[Op] = []
    # Labels.
    ops += _map_ops(
        "/metadata/labels",
        labels,
        desired.labels,
        owned.labels if allow_remove else (),
    )
    new_labels = keep_owned(owned.labels, labels, desired.labels)

    # Extended resources (status subresource). Only capacity is added: the kubelet
    # mirrors it to allocatable; removing or changing one touches both.
    cap = capacity or {}
    new_ers = keep_owned(owned.extended_resources, cap, desired.extended_resources)
    if allow_remove:
        for name in sorted(owned.extended_resources - set(desired.extended_resources)):
            if name in cap:
                ops.append({"op": "remove", "path": f"/status/capacity/{escape(name)}"})
                if allocatable and name in allocatable:
                    ops.append({"op": "remove", "path": f"/status/allocatable/{escape(name)}"})
    for name, value in sorted(desired.extended_resources.items()):
        if capacity is None:
            ops.append({"op": "add", "path": "/status/capacity", "value": {name: value}})
            capacity = {name: value}
        elif name not in cap:
            ops.append({"op": "add", "path": f"/status/capacity/{escape(name)}", "value": value})
        elif cap[name] != value:
            ops.append(
                {"op": "replace", "path": f"/status/capacity/{escape(name)}", "value": value}
            )
            if allocatable and name in allocatable:
                path = f"/status/allocatable/{escape(name)}"
                ops.append({"op": "replace", "path": path, "value": value})

    # Taints: only NFD-owned ones are removed or changed; the whole list is written
    # back (guarded by the resourceVersion test).
    spec = node.get("spec") or {}
    current_taints = [dict(t) for t in (spec.get("taints") or [])]
    wanted_taints = {(t.key, t.effect): t for t in desired.taints}
    new_list: list[dict[str, Any]] = []
    for t in current_taints:
        taint = Taint(t.get("key", ""), t.get("value") or "", t.get("effect", ""))
        ident = (taint.key, taint.effect)
        if ident in wanted_taints:
            want = wanted_taints.pop(ident)
            if taint.value != want.value and taint in owned.taints:
                t = {**t, **want.to_dict()}
                if not want.value:
                    t.pop("value", None)
            new_list.append(t)
        elif taint in owned.taints and allow_remove:
            continue
        else:
            new_list.append(t)
    new_list += [t.to_dict() for t in desired.taints if (t.key, t.effect) in wanted_taints]
    if new_list != current_taints:
        ops.append({"op": "add", "path": "/spec/taints", "value": new_list})
    present_taints = {
        Taint(t.get("key", ""), t.get("value") or "", t.get("effect", "")) for t in new_list
    }
    new_owned_taints = set(desired.taints) | (
        (owned.taints & present_taints) if not allow_remove else set()
    )

    # Annotations: the feature annotations plus NFD's tracking annotations.
    new_annotations = keep_owned(owned.annotations, annotations, desired.annotations)
    wanted_ann = dict(desired.annotations)
    tracking = {
        keys.labels: _join_names(new_labels),
        keys.extended_resources: _join_names(new_ers),
        keys.annotations: _join_names(new_annotations),
        keys.taints: ",".join(sorted(str(t) for t in new_owned_taints)),
    }
    if not drop_all_tracking:
        wanted_ann.update({k: v for k, v in tracking.items() if v})
    removable = set(owned.annotations) if allow_remove else set()
    removable |= set(keys.all())
    # Upstream up to v0.14 left version annotations on Nodes; v0.15+ deletes them.
    ns = annotation_ns(instance)
    removable |= {f"{ns}/worker.version", f"{ns}/master.version"}
    ops += _map_ops("/metadata/annotations", annotations, wanted_ann, removable)

    if not ops:
        return []
    version = meta.get("resourceVersion")
    if version:
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": version})
    return ops


def split_patch(ops: list[Op]) -> tuple[list[Op], list[Op]]:
    """(metadata/spec ops, status ops), each led by the resourceVersion test if any."""
    test = [op for op in ops if op["op"] == "test"]
    main = [op for op in ops if op["op"] != "test" and not op["path"].startswith("/status")]
    status = [op for op in ops if op["path"].startswith("/status")]
    return (test + main if main else []), (test + status if status else [])
