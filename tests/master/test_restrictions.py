"""Upstream v0.19's restrictions.*, the DisableAutoPrefix feature gate and dynamic
``@domain.feature.element`` values of NodeFeature labels: the pure parts (policy, patch,
namespace selector, config) and the Master's use of them, without an API server
(tests/e2e/test_master_restrictions.py runs them against a real one)."""

from __future__ import annotations

import argparse
import copy
import threading
from pathlib import Path
from typing import Any

import pytest

from nfd.configfile import ConfigError
from nfd.features import Features
from nfd.master.config import ConfigReloader, MasterConfig, Restrictions, parse_master_config
from nfd.master.core import Master, WorkItem
from nfd.master.namespaces import selector_matches
from nfd.master.nodefeatures import NODE_NAME_LABEL, NodeFeatureStore
from nfd.master.patch import compute_patch, parse_owned
from nfd.master.policy import Desired, PolicyConfig, Taint, build_desired, prefix_names
from nfd.rules.engine import RuleOutput
from tests.master import jsonpatch_apply

FNK = "feature.node.kubernetes.io"
ANN = "nfd.node.kubernetes.io"


def rules_out(**kw: Any) -> RuleOutput:
    return RuleOutput(**kw)


def node(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    capacity: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "n",
            "resourceVersion": "7",
            "labels": dict(labels or {}),
            "annotations": dict(annotations or {}),
        },
        "spec": {},
        "status": {"capacity": dict(capacity or {"cpu": "4"}), "allocatable": {"cpu": "4"}},
    }


def after(n: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    return jsonpatch_apply.apply_patch(copy.deepcopy(n), ops)


# -- restrictions.disableLabels / disableExtendedResources / disableAnnotations ---------


def test_disable_restrictions_drop_their_kind_only() -> None:
    out = rules_out(
        labels={"rule": "1"},
        annotations={"note": "x"},
        extended_resources={"epc": "4"},
        taints=[{"key": "example.com/t", "value": "", "effect": "NoSchedule"}],
    )
    worker = {f"{FNK}/w": "1"}
    full, _ = build_desired(worker, PolicyConfig(enable_taints=True), out)
    assert full.labels == {f"{FNK}/w": "1", f"{FNK}/rule": "1"}
    assert full.annotations and full.extended_resources and full.taints

    cfg = PolicyConfig(enable_taints=True, disable_labels=True)
    d, _ = build_desired(worker, cfg, out)
    # NodeFeature/worker labels and rule labels alike; the rest stays.
    assert d.labels == {}
    assert d.annotations == full.annotations and d.extended_resources == full.extended_resources
    assert d.taints == [Taint("example.com/t", "", "NoSchedule")]

    d, _ = build_desired(worker, PolicyConfig(enable_taints=True, disable_annotations=True), out)
    assert d.annotations == {} and d.labels == full.labels and d.extended_resources

    cfg = PolicyConfig(enable_taints=True, disable_extended_resources=True)
    d, _ = build_desired(worker, cfg, out)
    assert d.extended_resources == {} and d.labels == full.labels and d.annotations
    # --resource-labels extended resources are extended resources too.
    cfg = PolicyConfig(resource_labels=frozenset({"epc"}), disable_extended_resources=True)
    d, _ = build_desired({f"{FNK}/epc": "8"}, cfg)
    assert d.extended_resources == {} and d.labels == {}


def test_disable_labels_still_reports_refused_labels() -> None:
    d, rejected = build_desired({"kubernetes.io/x": "1"}, PolicyConfig(disable_labels=True))
    assert d.labels == {}
    assert [r.name for r in rejected] == ["kubernetes.io/x"]


def test_disable_labels_removes_only_what_nfd_owns() -> None:
    n = node(
        labels={f"{FNK}/old": "1", "team": "a"},
        annotations={f"{ANN}/feature-labels": "old"},
    )
    d, _ = build_desired({f"{FNK}/old": "1"}, PolicyConfig(disable_labels=True))
    got = after(n, compute_patch(n, d))
    assert got["metadata"]["labels"] == {"team": "a"}
    assert f"{ANN}/feature-labels" not in got["metadata"]["annotations"]


# -- restrictions.allowOverwrite ----------------------------------------------------


def test_allow_overwrite_false_leaves_what_nfd_does_not_own() -> None:
    n = node(
        labels={f"{FNK}/mine": "old", f"{FNK}/theirs": "admin", "vendor.io/same": "1"},
        annotations={
            f"{ANN}/feature-labels": "mine",
            f"{FNK}/note": "admin",
            f"{ANN}/extended-resources": "",
        },
        capacity={"cpu": "4", "vendor.io/dev": "2"},
    )
    d = Desired(
        labels={f"{FNK}/mine": "new", f"{FNK}/theirs": "nfd", "vendor.io/same": "1"},
        annotations={f"{FNK}/note": "nfd"},
        extended_resources={"vendor.io/dev": "8", "vendor.io/other": "1"},
    )
    got = after(n, compute_patch(n, d, allow_overwrite=False))
    labels, ann = got["metadata"]["labels"], got["metadata"]["annotations"]
    assert labels[f"{FNK}/mine"] == "new"  # owned: updated as always
    assert labels[f"{FNK}/theirs"] == "admin"  # not owned: left as is
    assert ann[f"{FNK}/note"] == "admin"
    assert got["status"]["capacity"]["vendor.io/dev"] == "2"
    assert got["status"]["capacity"]["vendor.io/other"] == "1"
    # ... and not taken over: a later removal leaves them.
    owned = parse_owned(got)
    assert owned.labels == {f"{FNK}/mine"}
    assert owned.extended_resources == {"vendor.io/other"}
    assert owned.annotations == set()

    # The default (upstream's): overwritten and owned from then on.
    got = after(n, compute_patch(n, d))
    assert got["metadata"]["labels"][f"{FNK}/theirs"] == "nfd"
    assert got["status"]["capacity"]["vendor.io/dev"] == "8"
    assert f"{FNK}/theirs" in parse_owned(got).labels


# -- DisableAutoPrefix ------------------------------------------------------------------


def test_prefix_names_prefers_the_prefixed_key_as_upstream() -> None:
    assert prefix_names({"a": "1", f"{FNK}/a": "2", "x.io/b": "3"}) == {
        f"{FNK}/a": "2",
        "x.io/b": "3",
    }
    assert prefix_names({"a": "1", f"{FNK}/a": "2"}, disabled=True) == {"a": "1", f"{FNK}/a": "2"}


def test_disable_auto_prefix_keeps_unprefixed_names() -> None:
    out = rules_out(
        labels={"rule": "1"},
        annotations={"note": "x"},
        extended_resources={"epc": "4"},
        taints=[{"key": "untainted", "value": "", "effect": "NoSchedule"}],
    )
    cfg = PolicyConfig(enable_taints=True, disable_auto_prefix=True)
    d, rejected = build_desired({"foo": "bar", f"{FNK}/p": "1"}, cfg, out)
    assert d.labels == {"foo": "bar", "rule": "1", f"{FNK}/p": "1"}
    assert d.annotations == {"note": "x"} and d.extended_resources == {"epc": "4"}
    # Taint keys are not affected by the gate: an unprefixed one is still refused.
    assert d.taints == [] and [r.kind for r in rejected] == ["taint"]
    # Values, the whitelist and denyLabelNs "*" still apply to unprefixed names.
    cfg = PolicyConfig(disable_auto_prefix=True, label_whitelist="^keep")
    d, rejected = build_desired({"keep": "1", "drop": "1", "bad": "no spaces"}, cfg)
    assert d.labels == {"keep": "1"} and {r.name for r in rejected} == {"drop", "bad"}
    d, _ = build_desired({"foo": "1"}, PolicyConfig(disable_auto_prefix=True, deny_label_ns={"*"}))
    assert d.labels == {}
    # Without the gate: the default namespace.
    d, _ = build_desired({"foo": "bar"}, PolicyConfig())
    assert d.labels == {f"{FNK}/foo": "bar"}


def test_unprefixed_names_are_tracked_unambiguously() -> None:
    n = node(labels={f"{FNK}/foo": "admin"})
    d = Desired(labels={"foo": "1"}, extended_resources={"epc": "2"})
    got = after(n, compute_patch(n, d))
    ann = got["metadata"]["annotations"]
    assert ann[f"{ANN}/feature-labels"] == "/foo"
    assert ann[f"{ANN}/extended-resources"] == "/epc"
    assert parse_owned(got).labels == {"foo"}
    # Dropping it removes "foo" and never the same-named label in the default namespace.
    gone = after(got, compute_patch(got, Desired()))
    assert "foo" not in gone["metadata"]["labels"]
    assert gone["metadata"]["labels"][f"{FNK}/foo"] == "admin"
    assert "epc" not in gone["status"]["capacity"]
    # Upstream's own entries ("foo") still mean feature.node.kubernetes.io/foo.
    assert parse_owned(node(annotations={f"{ANN}/feature-labels": "foo"})).labels == {f"{FNK}/foo"}


def test_master_with_disable_auto_prefix_merges_nodefeature_names_as_written() -> None:
    master = Master(PolicyConfig(disable_auto_prefix=True), None)
    applied: list[tuple[str, WorkItem]] = []
    master.submit = lambda n, item: applied.append((n, item))  # type: ignore[method-assign]
    store = NodeFeatureStore("nfd", disable_auto_prefix=True)
    master.node_features = store
    store.upsert(nf("nfd", "n1", "n1", {"foo": "nf", "bar": "1"}))
    store.synced.set()
    master.set_known_nodes({"n1"})
    master.handle_update("n1", {"foo": "grpc", "only-grpc": "1"}, None)
    assert applied[-1][1].desired.labels == {"foo": "nf", "bar": "1", "only-grpc": "1"}


# -- @domain.feature.element in NodeFeature / worker labels ---------------------------


def test_dynamic_values_of_worker_and_nodefeature_labels() -> None:
    feats = Features(attributes={"kernel.version": {"major": "6"}})
    d, rejected = build_desired(
        {"kmajor": "@kernel.version.major", "gone": "@kernel.version.nope", "bad": "@x"},
        PolicyConfig(),
        None,
        feats,
    )
    assert d.labels == {f"{FNK}/kmajor": "6"}
    reasons = {r.name: r.reason for r in rejected}
    assert "element nope not found on feature kernel.version" in reasons[f"{FNK}/gone"]
    assert "not in the form of '@domain.feature.element'" in reasons[f"{FNK}/bad"]
    # The rules' output is fed back as rule.matched first, as upstream's master does.
    d, _ = build_desired(
        {"copy": "@rule.matched.tier"}, PolicyConfig(), rules_out(labels={"tier": "gold"}), feats
    )
    assert d.labels[f"{FNK}/copy"] == "gold"


def test_master_resolves_nodefeature_dynamic_values_from_merged_features() -> None:
    master = Master(PolicyConfig(), None)
    applied: list[tuple[str, WorkItem]] = []
    master.submit = lambda n, item: applied.append((n, item))  # type: ignore[method-assign]
    store = NodeFeatureStore("nfd")
    master.node_features = store
    store.upsert(
        nf(
            "vendor",
            "v-n1",
            "n1",
            {"driver": "@vendor.driver.version"},
            attributes={"vendor.driver": {"elements": {"version": "550.54"}}},
        )
    )
    store.synced.set()
    master.set_known_nodes({"n1"})
    master.node_features_synced(store.nodes(), first=True)
    assert applied[-1][1].desired.labels == {f"{FNK}/driver": "550.54"}


# -- restrictions.nodeFeatureNamespaceSelector -----------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
            {"a": "2"},
            True,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
            {"a": "1"},
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        (
            {
                "matchLabels": {"kubernetes.io/metadata.name": "nfd"},
                "matchExpressions": [{"key": "x", "operator": "Exists"}],
            },
            {"kubernetes.io/metadata.name": "nfd"},
            False,
        ),
    ],
)
def test_selector_matches_like_metav1(selector: dict, labels: dict, want: bool) -> None:
    assert selector_matches(selector, labels) is want


class Selection:
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.synced = threading.Event()

    def selected(self, namespace: str) -> bool:
        return namespace in self.names


def nf(ns: str, name: str, node_name: str, labels: dict[str, str], **features: Any) -> dict:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": {NODE_NAME_LABEL: node_name}},
        "spec": {"labels": labels, "features": features},
    }


def test_store_merges_only_selected_namespaces_and_is_incomplete_until_listed() -> None:
    selection = Selection({"vendor"})
    store = NodeFeatureStore("nfd", namespace_filter=selection)
    store.upsert(nf("nfd", "n1", "n1", {"own": "1"}))
    store.upsert(nf("vendor", "v-n1", "n1", {"vendor": "1"}))
    store.synced.set()
    assert not store.complete()  # namespaces not listed yet: nothing may be removed
    selection.synced.set()
    assert store.complete()
    merged = store.merged("n1")
    # The master's own namespace is not special: not selected, not counted.
    assert merged is not None and merged.labels == {f"{FNK}/vendor": "1"}
    assert set(store.label_sources("n1")) == {f"{FNK}/vendor"}
    assert store.nodes_in({"nfd"}) == {"n1"} and store.nodes_in({"other"}) == set()
    selection.names = set()
    assert store.merged("n1") is None and store.has("n1")


def test_master_removes_nothing_until_the_namespaces_are_listed() -> None:
    selection = Selection({"vendor"})
    master = Master(PolicyConfig(), None)
    applied: list[tuple[str, WorkItem]] = []
    master.submit = lambda n, item: applied.append((n, item))  # type: ignore[method-assign]
    store = NodeFeatureStore("nfd", namespace_filter=selection)
    master.node_features = store
    master.set_known_nodes({"n1"})
    store.upsert(nf("vendor", "v-n1", "n1", {"vendor": "1"}))
    store.synced.set()
    master.node_features_synced(store.nodes(), first=True)
    assert applied[-1][1].allow_remove is False
    selection.synced.set()
    master.node_features_synced(store.nodes(), first=True)
    assert applied[-1][1].allow_remove is True
    # The namespace leaves the selection: the node is evaluated again, its labels go.
    selection.names = set()
    master.node_features_changed(store.nodes_in({"vendor"}))
    assert applied[-1][1].desired.labels == {} and applied[-1][1].allow_remove


# -- config -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "restrictions:\n  nodeFeatureNamespaceSelector:\n    matchLabels: {'bad key!': x}\n",
            r"^m:2: restrictions\.nodeFeatureNamespaceSelector\.matchLabels: key 'bad key!' "
            r"is not a valid label name",
        ),
        (
            "restrictions:\n  nodeFeatureNamespaceSelector:\n    matchExpressions:\n"
            "    - {key: team, operator: In, values: ['a b']}\n",
            r"matchExpressions\[0\]: value 'a b' of 'team' is not a valid label value",
        ),
        (
            "restrictions:\n  nodeFeatureNamespaceSelector:\n    matchExpressions:\n"
            "    - {key: team, operator: Has}\n",
            r"matchExpressions\[0\]\.operator: 'Has' is not one of In, NotIn",
        ),
        ("restrictions:\n  allowOverwrite: sometimes\n", r"^m:2: restrictions\.allowOverwrite: "),
    ],
)
def test_bad_restrictions_are_specific_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_master_config(text, "m")


def test_restrictions_reach_the_policy_and_need_a_restart(tmp_path: Path) -> None:
    cfg = parse_master_config(
        "restrictions:\n  disableLabels: true\n  disableAnnotations: true\n", "m"
    )
    assert cfg.warnings == ()
    policy = cfg.policy(gpu_marking=False, disable_auto_prefix=True)
    assert policy.disable_labels and policy.disable_annotations
    assert not policy.disable_extended_resources and policy.disable_auto_prefix
    # A reload takes the label policy over live, the restrictions only after a restart.
    path = tmp_path / "nfd-master.conf"
    path.write_text("enableTaints: true\nrestrictions:\n  disableExtendedResources: true\n")
    got: list[PolicyConfig] = []
    reload = ConfigReloader(
        str(path),
        None,
        True,
        argparse.Namespace(),
        set(),
        MasterConfig(restrictions=Restrictions(disable_labels=True)),
        got.append,
        False,
        disable_auto_prefix=True,
    )
    assert reload()
    assert got[-1].enable_taints and got[-1].disable_labels and got[-1].disable_auto_prefix
    assert not got[-1].disable_extended_resources


# -- the periodic resync's pass over Nodes without input --------------------------------


def test_resync_clears_nodes_without_input_at_the_second_pass_only() -> None:
    master = Master(PolicyConfig(), None)
    applied: list[tuple[str, WorkItem]] = []
    master.submit = lambda n, item: applied.append((n, item))  # type: ignore[method-assign]
    store = NodeFeatureStore("nfd")
    master.node_features = store
    store.upsert(nf("nfd", "fed", "fed", {"x": "1"}))
    store.synced.set()
    master.set_known_nodes({"fed", "idle"})
    master.node_features_synced(store.nodes(), first=True)
    applied.clear()
    master.resync()
    # First pass: found without input, nothing removed yet (upstream's processedOnce).
    assert [n for n, _ in applied] == ["fed"]
    applied.clear()
    master.resync()
    assert [n for n, _ in applied] == ["fed", "idle"]
    idle = applied[-1][1]
    assert idle.allow_remove and idle.desired == Desired()


def test_resync_never_clears_once_a_grpc_worker_was_seen() -> None:
    master = Master(PolicyConfig(), None)
    applied: list[tuple[str, WorkItem]] = []
    master.submit = lambda n, item: applied.append((n, item))  # type: ignore[method-assign]
    store = NodeFeatureStore("nfd")
    master.node_features = store
    store.synced.set()
    master.set_known_nodes({"grpc", "idle"})
    master.handle_update("grpc", {f"{FNK}/w": "1"}, None)
    master.forget("grpc")  # e.g. its state dropped: still, a gRPC cluster
    for _ in range(3):
        master.resync()
    assert {n for n, _ in applied} == {"grpc"}
    # Without a NodeFeature API (gRPC only) there is no such pass either.
    plain = Master(PolicyConfig(), None)
    plain.submit = lambda n, item: applied.append((n, item))  # type: ignore[method-assign]
    plain.set_known_nodes({"other"})
    plain.resync()
    plain.resync()
    assert "other" not in {n for n, _ in applied}


def test_a_rule_label_replaces_a_dynamic_worker_label_before_it_is_resolved() -> None:
    d, rejected = build_desired(
        {"x": "@no.such.element"}, PolicyConfig(), rules_out(labels={"x": "rule"}), Features()
    )
    assert d.labels == {f"{FNK}/x": "rule"} and rejected == []
