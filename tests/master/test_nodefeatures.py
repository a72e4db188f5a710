"""NodeFeatureStore (merge order and semantics of upstream v0.19), the one-item-at-a-time
list parser, and the Master's use of NodeFeature input (fast, no API server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nfd.master.core import Master, WorkItem
from nfd.master.nodefeatures import NODE_NAME_LABEL, NodeFeatureStore, iter_list_items
from nfd.master.policy import PolicyConfig
from nfd.wire import features_from_proto

FNK = "feature.node.kubernetes.io"


def nf(ns: str, name: str, node: str | None, labels: dict[str, Any], **features: Any) -> dict:
    meta: dict[str, Any] = {"namespace": ns, "name": name, "managedFields": [{"big": "x" * 100}]}
    if node is not None:
        meta["labels"] = {NODE_NAME_LABEL: node}
    return {"metadata": meta, "spec": {"labels": labels, "features": features}}


def test_merge_order_own_namespace_first_then_name_then_namespace() -> None:
    store = NodeFeatureStore("nfd")
    assert store.upsert(nf("zz", "b", "n1", {"k": "zz/b"})) == {"n1"}
    store.upsert(nf("aa", "b", "n1", {"k": "aa/b", "only-aa": "1"}))
    store.upsert(nf("nfd", "z", "n1", {"k": "nfd/z", "own": "1"}))
    merged = store.merged("n1")
    assert merged is not None
    # nfd/z first, then aa/b, then zz/b: the last one wins.
    assert merged.labels == {f"{FNK}/k": "zz/b", f"{FNK}/only-aa": "1", f"{FNK}/own": "1"}
    assert store.remove(("zz", "b")) == {"n1"}
    assert store.merged("n1").labels[f"{FNK}/k"] == "aa/b"  # type: ignore[union-attr]


def test_deny_node_feature_labels_keeps_only_the_own_objects_labels() -> None:
    store = NodeFeatureStore("nfd", deny_third_party_labels=True)
    store.upsert(nf("nfd", "n1", "n1", {"own": "1"}))
    store.upsert(
        nf(
            "gpu",
            "nvidia-features-for-n1",
            "n1",
            {"gfd": "1"},
            **{"attributes": {"gpu.x": {"elements": {"a": "1"}}}},
        )
    )
    store.upsert(nf("nfd", "other-n1", "n1", {"other": "1"}))
    merged = store.merged("n1")
    assert merged is not None and merged.labels == {f"{FNK}/own": "1"}
    assert "gpu.x" in merged.features.vattributes  # features still count (for rules)


def test_features_merge_like_upstream_merge_into() -> None:
    store = NodeFeatureStore("nfd")
    store.upsert(
        nf(
            "nfd",
            "n1",
            "n1",
            {},
            flags={"cpu.cpuid": {"elements": {"AVX": {}}}},
            attributes={"kernel.version": {"elements": {"major": "5", "minor": "15"}}},
            instances={"pci.device": {"elements": [{"attributes": {"vendor": "8086"}}]}},
        )
    )
    store.upsert(
        nf(
            "gpu",
            "nvidia-features-for-n1",
            "n1",
            {},
            flags={"cpu.cpuid": {"elements": {"AVX2": {}}}},
            attributes={"kernel.version": {"elements": {"major": "6"}}},
            instances={"pci.device": {"elements": [{"attributes": {"vendor": "10de"}}]}},
        )
    )
    merged = store.merged("n1")
    assert merged is not None
    f = features_from_proto(merged.features)
    assert f.flags["cpu.cpuid"] == {"AVX", "AVX2"}
    assert f.attributes["kernel.version"] == {"major": "6", "minor": "15"}
    assert f.instances["pci.device"] == [{"vendor": "8086"}, {"vendor": "10de"}]


def test_unchanged_objects_and_objects_without_a_node_change_nothing() -> None:
    store = NodeFeatureStore("nfd")
    obj = nf("a", "x", "n1", {"k": "1"})
    assert store.upsert(obj) == {"n1"}
    obj["metadata"]["resourceVersion"] = "2"
    assert store.upsert(obj) == set()  # same labels and features
    assert store.upsert(nf("a", "nolabel", None, {"k": "1"})) == set()
    assert store.keys()[("a", "nolabel")] == ""
    # Moving an object to another node changes both.
    assert store.upsert(nf("a", "x", "n2", {"k": "1"})) == {"n1", "n2"}
    assert store.merged("n1") is None


def test_a_bad_object_costs_only_itself() -> None:
    def check(node: str, labels: Any, features: Any) -> None:
        if len(labels) > 2:
            raise ValueError("over budget")

    store = NodeFeatureStore("nfd", check)
    store.upsert(nf("a", "good", "n1", {"k": "1"}))
    store.upsert(nf("a", "big", "n1", {"a": "1", "b": "2", "c": "3"}))
    store.upsert(
        {
            "metadata": {"namespace": "a", "name": "bad", "labels": {NODE_NAME_LABEL: "n1"}},
            "spec": {"features": {"flags": "nope"}},
        }
    )
    merged = store.merged("n1")
    assert merged is not None and merged.labels == {f"{FNK}/k": "1"}
    assert store.objects_of("n1") == [("a", "bad"), ("a", "big"), ("a", "good")]


def test_list_items_are_parsed_one_at_a_time() -> None:
    items = [{"metadata": {"name": f"o{i}"}, "spec": {"labels": {"x": str(i)}}} for i in range(3)]
    body = json.dumps(
        {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"continue": "c"}},
        indent=1,
    ).encode()
    gen = iter_list_items(body)
    got = []
    with pytest.raises(StopIteration) as end:
        while True:
            got.append(next(gen))
    assert got == items
    assert end.value.value == {"continue": "c"}
    empty = iter_list_items(b'{"items": [], "metadata": {"resourceVersion": "7"}}')
    with pytest.raises(StopIteration) as end:
        next(empty)
    assert end.value.value == {"resourceVersion": "7"}
    with pytest.raises(ValueError):
        list(iter_list_items(b'{"items": [1 2]}'))


def make_master() -> tuple[Master, NodeFeatureStore, list[tuple[str, WorkItem]]]:
    applied: list[tuple[str, WorkItem]] = []
    master = Master(PolicyConfig(), None)
    master.submit = lambda node, item: applied.append((node, item))  # type: ignore[method-assign]
    store = NodeFeatureStore("nfd")
    master.node_features = store
    return master, store, applied


def test_master_merges_grpc_then_nodefeatures_and_removes_only_once_listed() -> None:
    master, store, applied = make_master()
    master.set_known_nodes({"n1"})
    master.handle_update("n1", {f"{FNK}/w": "grpc", f"{FNK}/s": "grpc"}, None)
    assert applied[-1][1].allow_remove is False  # objects not listed yet
    store.upsert(nf("gpu", "nvidia-features-for-n1", "n1", {"s": "nf"}))
    store.synced.set()
    master.node_features_synced(store.nodes(), first=True)
    node, item = applied[-1]
    assert node == "n1" and item.allow_remove
    assert item.desired.labels == {f"{FNK}/w": "grpc", f"{FNK}/s": "nf"}
    # The object goes: the worker's labels stay, the object's go.
    master.node_features_changed(store.remove(("gpu", "nvidia-features-for-n1")))
    assert applied[-1][1].desired.labels == {f"{FNK}/w": "grpc", f"{FNK}/s": "grpc"}


def test_gfd_nodefeature_values_win_over_the_workers_gpu_labels() -> None:
    """Our PCI-table GPU labels are a stand-in until GFD runs: its NodeFeature's values
    replace them key by key, and keys only one side gives stay."""
    master, store, applied = make_master()
    master.set_known_nodes({"n1"})
    store.synced.set()
    master.handle_update(
        "n1",
        {
            "nvidia.com/gpu.family": "hopper",
            "nvidia.com/gpu.compute.major": "9",
            "nvidia.com/gpu.count": "8",
        },
        None,
    )
    gfd = {"nvidia.com/gpu.count": "7", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    master.node_features_changed(
        store.upsert(nf("gpu-operator", "nvidia-features-for-n1", "n1", gfd))
    )
    assert applied[-1][1].desired.labels == {
        "nvidia.com/gpu.family": "hopper",
        "nvidia.com/gpu.compute.major": "9",
        "nvidia.com/gpu.count": "7",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    }


def test_master_nodefeature_only_node_and_unknown_nodes() -> None:
    master, store, applied = make_master()
    store.synced.set()
    master.set_known_nodes({"n1"})
    master.node_features_changed(store.upsert(nf("a", "x", "ghost", {"k": "1"})))
    assert applied == []  # no such Node
    master.node_features_changed(store.upsert(nf("a", "y", "n1", {"k": "1"})))
    assert applied[-1][1].desired.labels == {f"{FNK}/k": "1"}
    master.node_features_changed(store.remove(("a", "y")))
    assert applied[-1][1].desired.labels == {} and applied[-1][1].allow_remove
    assert master.node_names() == []  # nothing left to hold
    # The Node appears later: its waiting object is applied.
    master.node_added("ghost")
    assert applied[-1][0] == "ghost"


class FakeCustomObjects:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []

    def delete_namespaced_custom_object(
        self, group: str, version: str, ns: str, plural: str, name: str
    ) -> None:
        assert (group, version, plural) == ("nfd.k8s-sigs.io", "v1alpha1", "nodefeatures")
        self.deleted.append((ns, name))


def test_gc_deletes_only_as_leader_and_only_objects_of_missing_nodes() -> None:
    import threading

    from nfd.master.nodefeatures import NodeFeatureGC

    store = NodeFeatureStore("nfd")
    store.upsert(nf("a", "live", "n1", {"k": "1"}))
    store.upsert(nf("a", "ghost", "gone", {"k": "1"}))
    store.upsert(nf("a", "nolabel", None, {}))
    leader = threading.Event()
    gc = NodeFeatureGC(None, store, lambda: {"n1"}, leader.is_set)
    fake = FakeCustomObjects()
    gc.api = fake
    assert gc.collect() == 0  # the NodeFeature list has not completed
    store.synced.set()
    gc.start()
    try:
        threading.Event().wait(2.5)
        assert fake.deleted == []  # a standby replica deletes nothing
        leader.set()
        wait = threading.Event()
        for _ in range(50):
            if len(fake.deleted) >= 2:
                break
            wait.wait(0.1)
        assert sorted(fake.deleted) == [("a", "ghost"), ("a", "nolabel")]
        # A Node's deletion deletes the objects naming it.
        store.upsert(nf("b", "later", "n2", {}))
        gc.known_nodes = lambda: {"n1"}
        gc.node_deleted("n2")
        for _ in range(50):
            if ("b", "later") in fake.deleted:
                break
            wait.wait(0.1)
        assert ("b", "later") in fake.deleted and ("a", "live") not in fake.deleted
    finally:
        gc.stop()
