"""NodeFeatureGroup evaluation (fast, no API server): which nodes a group's
featureGroupRules match, membership kept across node and group changes, what a change
costs, and when a status write is due (only when status.nodes differs)."""

from __future__ import annotations

from typing import Any

from nfd._proto import v1alpha1_pb2
from nfd.features import Features
from nfd.master.core import Master
from nfd.master.groups import (
    NodeFeatureGroups,
    gate_enabled,
    group_matches,
    load_group_rules,
    status_body,
    status_names,
)
from nfd.master.nodefeatures import NODE_NAME_LABEL, NodeFeatureStore
from nfd.master.policy import PolicyConfig
from nfd.wire import features_to_proto


def kernel(version: str, **flags: bool) -> v1alpha1_pb2.Features:
    return features_to_proto(
        Features(
            flags={"cpu.cpuid": {k for k, on in flags.items() if on}},
            attributes={"kernel.version": {"major": version}},
        )
    )


def group(name: str, *rules: dict[str, Any], nodes: list[str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "nfd"},
        "spec": {"featureGroupRules": list(rules)},
    }
    if nodes is not None:
        obj["status"] = {"nodes": [{"name": n} for n in nodes]}
    return obj


def kernel_rule(major: str, name: str = "kernel") -> dict[str, Any]:
    return {
        "name": name,
        "matchFeatures": [
            {
                "feature": "kernel.version",
                "matchExpressions": {"major": {"op": "In", "value": [major]}},
            }
        ],
    }


AVX_RULE = {
    "name": "avx",
    "matchAny": [
        {
            "matchFeatures": [
                {"feature": "cpu.cpuid", "matchExpressions": {"AVX512F": {"op": "Exists"}}}
            ]
        },
        {
            "matchFeatures": [
                {"feature": "cpu.cpuid", "matchExpressions": {"AVX2": {"op": "Exists"}}}
            ]
        },
    ],
}


def loaded(*rules: dict[str, Any]) -> list[Any]:
    errors: list[str] = []
    out = load_group_rules(group("g", *rules), errors.append)
    assert not errors
    return out


def features(proto: v1alpha1_pb2.Features) -> Features:
    from nfd.wire import features_from_proto

    return features_from_proto(proto)


def test_the_gate_is_off_by_default_as_upstream() -> None:
    assert not gate_enabled(None)
    assert not gate_enabled({"NodeFeatureAPI": True})
    assert gate_enabled({"NodeFeatureGroupAPI": True})


def test_match_features_and_match_any() -> None:
    assert group_matches(loaded(kernel_rule("6")), features(kernel("6")))
    assert not group_matches(loaded(kernel_rule("6")), features(kernel("5")))
    assert group_matches(loaded(AVX_RULE), features(kernel("5", AVX2=True)))
    assert not group_matches(loaded(AVX_RULE), features(kernel("5", SSE4=True)))
    # Any one rule of the group is enough.
    assert group_matches(loaded(kernel_rule("6"), AVX_RULE), features(kernel("5", AVX2=True)))
    assert not group_matches([], features(kernel("6")))


def test_vars_of_a_rule_feed_the_rules_after_it() -> None:
    first = {**kernel_rule("6", "first"), "vars": {"new-kernel": "true"}}
    second = {
        "name": "second",
        "matchFeatures": [
            {"feature": "rule.matched", "matchExpressions": {"new-kernel": {"op": "IsTrue"}}}
        ],
    }
    rules = loaded(first, second)
    from nfd.rules import execute_rules

    out = execute_rules(rules, features(kernel("6")), resolve_dynamic=False)
    assert out.matched_rules == ["first", "second"]
    # On a copy: the next group does not see them.
    feats = features(kernel("5"))
    assert not group_matches(loaded(second), feats)
    assert "rule.matched" not in feats.attributes


def test_a_bad_rule_costs_only_itself() -> None:
    errors: list[str] = []
    bad = {
        "name": "bad",
        "matchFeatures": [
            {"feature": "kernel.version", "matchExpressions": {"major": {"op": "Nope"}}}
        ],
    }
    rules = load_group_rules(group("g", bad, kernel_rule("6")), errors.append)
    assert len(rules) == 1 and len(errors) == 1
    assert "NodeFeatureGroup nfd/g: spec.featureGroupRules[0]" in errors[0]
    errors.clear()
    assert load_group_rules({"metadata": {"name": "x"}, "spec": {}}, errors.append) == []
    assert "featureGroupRules: expected a list" in errors[0]


def test_status_shape_is_upstreams() -> None:
    assert status_body(["a", "b"]) == {"status": {"nodes": [{"name": "a"}, {"name": "b"}]}}
    assert status_names({"status": {"nodes": [{"name": "b"}, {"name": "a"}]}}) == ["b", "a"]
    assert status_names({}) == []


def make(inputs: dict[str, v1alpha1_pb2.Features]) -> NodeFeatureGroups:
    return NodeFeatureGroups(lambda: sorted(inputs.items()))


def test_membership_follows_node_changes_and_writes_only_on_change() -> None:
    inputs = {"n2": kernel("6"), "n1": kernel("6"), "n3": kernel("5")}
    groups = make(inputs)
    groups.set_group(group("new", kernel_rule("6")))
    # Node-name order, as upstream (its node list comes sorted by name).
    assert groups.pending() == [("new", ["n1", "n2"])]
    groups.written("new", ["n1", "n2"])
    assert groups.pending() == []
    # The watch echoes the write: no change, no re-evaluation.
    before = groups.evaluations
    groups.set_group(group("new", kernel_rule("6"), nodes=["n1", "n2"]))
    assert groups.evaluations == before and groups.pending() == []
    # Same features again: nothing to write.
    groups.node_features("n1", kernel("6"))
    assert groups.pending() == []
    groups.node_features("n3", kernel("6"))
    assert groups.pending() == [("new", ["n1", "n2", "n3"])]
    groups.written("new", ["n1", "n2", "n3"])
    groups.node_features("n1", kernel("5"))
    assert groups.pending() == [("new", ["n2", "n3"])]
    groups.written("new", ["n2", "n3"])
    groups.node_gone("n2")
    assert groups.pending() == [("new", ["n3"])]


def test_no_member_and_no_status_is_no_change() -> None:
    groups = make({"n1": kernel("5")})
    groups.set_group(group("none", kernel_rule("6")))
    assert groups.pending() == []
    # A status someone else wrote is corrected.
    groups.set_group(group("none", kernel_rule("6"), nodes=["ghost"]))
    assert groups.pending() == [("none", [])]


def test_a_changed_spec_re_evaluates_every_node_and_a_deleted_group_goes() -> None:
    inputs = {"n1": kernel("6"), "n2": kernel("5")}
    groups = make(inputs)
    groups.set_group(group("g", kernel_rule("6")))
    groups.written("g", ["n1"])
    groups.set_group(group("g", kernel_rule("5"), nodes=["n1"]))
    assert groups.pending() == [("g", ["n2"])]
    groups.remove_group("g")
    assert groups.pending() == [] and len(groups) == 0
    groups.set_group(group("a", kernel_rule("6")))
    groups.set_group(group("b", kernel_rule("6")))
    groups.retain({"b"})
    assert [name for name, _ in groups.pending()] == ["b"]


def test_cost_of_a_node_change_is_one_evaluation_per_group() -> None:
    inputs = {f"n{i:03d}": kernel("6" if i % 2 else "5") for i in range(100)}
    groups = make(inputs)
    for i in range(20):
        groups.set_group(group(f"g{i}", kernel_rule("6")))
    assert groups.evaluations == 20 * 100  # a new group: one evaluation per node
    before = groups.evaluations
    groups.node_features("n000", kernel("6"))
    assert groups.evaluations - before == 20
    assert all(nodes[0] == "n000" for _, nodes in groups.pending())


def test_no_groups_costs_nothing() -> None:
    groups = make({})
    groups.node_features("n1", kernel("6"))
    assert groups.evaluations == 0


def nf(node: str, proto_features: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "nfd", "name": node, "labels": {NODE_NAME_LABEL: node}},
        "spec": {"labels": {}, "features": proto_features},
    }


def test_the_master_feeds_merged_features_and_node_deletion() -> None:
    """NodeFeature objects through the Master: their features decide membership; a
    deleted Node leaves the group."""
    master = Master(PolicyConfig(), None)
    store = NodeFeatureStore("nfd")
    master.node_features = store
    master.groups = NodeFeatureGroups(master.node_inputs)
    master.set_known_nodes(["a", "b"])
    six = {"attributes": {"kernel.version": {"elements": {"major": "6"}}}}
    five = {"attributes": {"kernel.version": {"elements": {"major": "5"}}}}
    master.node_features_changed(store.upsert(nf("a", six)) | store.upsert(nf("b", five)))
    master.groups.set_group(group("g", kernel_rule("6")))
    assert master.groups.pending() == [("g", ["a"])]
    master.node_features_changed(store.upsert(nf("b", six)))
    assert master.groups.pending() == [("g", ["a", "b"])]
    master.node_deleted("a")
    assert master.groups.pending() == [("g", ["b"])]
    # Its objects gone: the node has no features and belongs to no group.
    master.node_features_changed(store.remove(("nfd", "b")))
    assert master.groups.pending() == []


class FakeApi:
    """The status subresource of CustomObjectsApi: records writes, fails when told."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, Any]] = []
        self.fail = 0

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        assert kwargs.get("_content_type") == "application/merge-patch+json"
        if self.fail:
            self.fail -= 1
            raise RuntimeError("API down")
        self.writes.append((args[4], args[5]))


def test_only_the_leader_writes_and_failed_writes_are_retried() -> None:
    import threading
    import time

    from nfd.master.groups import NodeFeatureGroupWatcher

    groups = make({"n1": kernel("6")})
    leading = [False]
    watcher = NodeFeatureGroupWatcher(
        None, "nfd", groups, leading=lambda: leading[0], ready=lambda: True
    )
    api = watcher.api = FakeApi()
    api.fail = 1
    groups.set_group(group("g", kernel_rule("6")))
    # The writer alone (no watch: the group was set above).
    threading.Thread(target=watcher._write_loop, daemon=True).start()
    try:
        time.sleep(0.3)
        assert api.writes == []  # a standby writes nothing
        leading[0] = True
        deadline = time.monotonic() + 5
        while not api.writes and time.monotonic() < deadline:
            time.sleep(0.02)
        # The first attempt failed; the retry wrote it, once.
        assert api.writes == [("g", status_body(["n1"]))]
        time.sleep(0.3)
        assert len(api.writes) == 1 and groups.pending() == []
    finally:
        watcher.stop()


def test_after_a_restart_a_member_not_known_yet_stays_for_the_grace() -> None:
    """A gRPC worker's node is known only once its worker reconnects: the status keeps it
    until then (or the grace ends); a node known not to match goes at once."""
    import time

    groups = make({"n1": kernel("5")})
    groups.set_group(group("g", kernel_rule("6"), nodes=["grpc", "n1"]))
    groups.hold_unknown(60)
    assert groups.pending() == [("g", ["grpc"])]  # n1 is known: it does not match
    groups.written("g", ["grpc"])
    assert groups.pending() == []
    groups.node_features("grpc", kernel("5"))  # its worker is back: it does not match
    assert groups.pending() == [("g", [])]
    # Unknown until the grace ends.
    groups = make({})
    groups.set_group(group("g", kernel_rule("6"), nodes=["gone"]))
    groups.hold_unknown(60)
    assert groups.pending() == []
    assert groups.pending(now=time.monotonic() + 61) == [("g", [])]
