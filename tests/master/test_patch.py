"""JSON patch computation against Node dicts (reference §7.4)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nfd.master.patch import compute_patch, escape, parse_owned, split_patch
from nfd.master.policy import Desired, Taint
from tests.master import jsonpatch_apply

FNK = "feature.node.kubernetes.io"
ANN = "nfd.node.kubernetes.io"


def node(
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    capacity: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "n",
            "resourceVersion": "42",
            "labels": {"kubernetes.io/hostname": "n", **(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {"taints": taints} if taints is not None else {},
        "status": {"capacity": dict(capacity or {"cpu": "4"}), "allocatable": {"cpu": "4"}},
    }


def apply(n: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    return jsonpatch_apply.apply_patch(copy.deepcopy(n), ops)


def test_escape() -> None:
    assert escape(f"{FNK}/cpu-x") == "feature.node.kubernetes.io~1cpu-x"
    assert escape("a~b") == "a~0b"


def test_fresh_node_gets_labels_and_tracking_annotation() -> None:
    n = node()
    ops = compute_patch(n, Desired(labels={f"{FNK}/b": "1", "vendor.io/a": "x"}))
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "42"}
    assert {"op": "add", "path": f"/metadata/labels/{FNK}~1b", "value": "1"} in ops
    after = apply(n, ops)
    assert after["metadata"]["labels"][f"{FNK}/b"] == "1"
    assert after["metadata"]["annotations"][f"{ANN}/feature-labels"] == "b,vendor.io/a"
    # Applying the same desired state again needs no patch at all.
    assert compute_patch(after, Desired(labels={f"{FNK}/b": "1", "vendor.io/a": "x"})) == []


def test_only_owned_labels_are_removed() -> None:
    n = node(
        labels={f"{FNK}/old": "true", f"{FNK}/users": "mine", f"{FNK}/keep": "1"},
        annotations={f"{ANN}/feature-labels": "keep,old"},
    )
    ops = compute_patch(n, Desired(labels={f"{FNK}/keep": "1"}))
    after = apply(n, ops)
    assert f"{FNK}/old" not in after["metadata"]["labels"]
    assert after["metadata"]["labels"][f"{FNK}/users"] == "mine"
    assert after["metadata"]["annotations"][f"{ANN}/feature-labels"] == "keep"


def test_no_removal_until_fresh_state() -> None:
    n = node(
        labels={f"{FNK}/old": "true", f"{FNK}/keep": "1"},
        annotations={f"{ANN}/feature-labels": "keep,old"},
    )
    ops = compute_patch(
        n, Desired(labels={f"{FNK}/keep": "2", f"{FNK}/new": "x"}), allow_remove=False
    )
    assert not [op for op in ops if op["op"] == "remove"]
    after = apply(n, ops)
    assert after["metadata"]["labels"][f"{FNK}/old"] == "true"
    assert after["metadata"]["labels"][f"{FNK}/keep"] == "2"
    # old stays owned, so a later fresh update can still remove it.
    assert after["metadata"]["annotations"][f"{ANN}/feature-labels"] == "keep,new,old"


def test_replace_changed_value() -> None:
    n = node(labels={f"{FNK}/a": "1"}, annotations={f"{ANN}/feature-labels": "a"})
    ops = compute_patch(n, Desired(labels={f"{FNK}/a": "2"}))
    assert ops[1:] == [{"op": "replace", "path": f"/metadata/labels/{FNK}~1a", "value": "2"}]


def test_node_without_labels_or_annotations_maps() -> None:
    n = {"metadata": {"name": "n", "resourceVersion": "1"}, "spec": {}, "status": {}}
    ops = compute_patch(n, Desired(labels={"vendor.io/a": "1"}, extended_resources={"v.io/r": "2"}))
    after = apply(n, ops)
    assert after["metadata"]["labels"] == {"vendor.io/a": "1"}
    assert after["status"]["capacity"] == {"v.io/r": "2"}


def test_extended_resources() -> None:
    n = node(
        capacity={"cpu": "4", f"{FNK}/old": "1", f"{FNK}/chg": "1"},
        annotations={f"{ANN}/extended-resources": "chg,old"},
    )
    n["status"]["allocatable"].update({f"{FNK}/old": "1", f"{FNK}/chg": "1"})
    ops = compute_patch(n, Desired(extended_resources={f"{FNK}/chg": "2", f"{FNK}/new": "3"}))
    main, status = split_patch(ops)
    assert status[0]["op"] == "test" and main[0]["op"] == "test"
    assert all(op["path"].startswith("/status") for op in status[1:])
    after = apply(n, ops)
    assert after["status"]["capacity"] == {"cpu": "4", f"{FNK}/chg": "2", f"{FNK}/new": "3"}
    assert after["status"]["allocatable"] == {"cpu": "4", f"{FNK}/chg": "2"}
    assert after["metadata"]["annotations"][f"{ANN}/extended-resources"] == "chg,new"


def test_taints_only_owned_ones_change() -> None:
    foreign = {"key": "other.io/t", "effect": "NoSchedule"}
    mine_old = {"key": "vendor.io/old", "value": "x", "effect": "NoExecute"}
    n = node(taints=[foreign, mine_old], annotations={f"{ANN}/taints": "vendor.io/old=x:NoExecute"})
    want = Taint("vendor.io/new", "gpu", "NoSchedule")
    after = apply(n, compute_patch(n, Desired(taints=[want])))
    assert after["spec"]["taints"] == [foreign, want.to_dict()]
    assert after["metadata"]["annotations"][f"{ANN}/taints"] == "vendor.io/new=gpu:NoSchedule"
    assert compute_patch(after, Desired(taints=[want])) == []
    # Dropping every taint leaves the foreign one.
    cleared = apply(after, compute_patch(after, Desired()))
    assert cleared["spec"]["taints"] == [foreign]
    assert f"{ANN}/taints" not in cleared["metadata"]["annotations"]


def test_feature_annotations_tracked() -> None:
    n = node(annotations={f"{FNK}/gone": "1", f"{ANN}/feature-annotations": "gone"})
    after = apply(n, compute_patch(n, Desired(annotations={f"{FNK}/note": "hi"})))
    ann = after["metadata"]["annotations"]
    assert ann[f"{FNK}/note"] == "hi" and f"{FNK}/gone" not in ann
    assert ann[f"{ANN}/feature-annotations"] == "note"


def test_instance_prefixes_tracking_annotations() -> None:
    n = node()
    after = apply(n, compute_patch(n, Desired(labels={"vendor.io/a": "1"}), instance="blue"))
    assert after["metadata"]["annotations"] == {
        "blue.nfd.node.kubernetes.io/feature-labels": "vendor.io/a"
    }
    assert parse_owned(after, "blue").labels == {"vendor.io/a"}
    assert parse_owned(after).labels == set()


def test_prune_drops_everything_owned() -> None:
    n = node(
        labels={f"{FNK}/a": "1", "user.io/x": "y"},
        annotations={f"{ANN}/feature-labels": "a", "user.io/ann": "z"},
    )
    after = apply(n, compute_patch(n, Desired(), drop_all_tracking=True))
    assert after["metadata"]["labels"] == {"kubernetes.io/hostname": "n", "user.io/x": "y"}
    assert after["metadata"]["annotations"] == {"user.io/ann": "z"}


@pytest.mark.parametrize("allow_remove", [True, False])
def test_patch_is_idempotent(allow_remove: bool) -> None:
    n = node(labels={f"{FNK}/x": "1"}, annotations={f"{ANN}/feature-labels": "x,y"})
    d = Desired(labels={f"{FNK}/z": "3"}, annotations={f"{FNK}/a": "b"})
    after = apply(n, compute_patch(n, d, allow_remove=allow_remove))
    assert compute_patch(after, d, allow_remove=allow_remove) == []


def test_stale_upstream_version_annotations_are_removed() -> None:
    n = node(annotations={f"{ANN}/worker.version": "v0.14.0", f"{ANN}/master.version": "v0.14"})
    after = apply(n, compute_patch(n, Desired(labels={"vendor.io/a": "1"})))
    assert after["metadata"]["annotations"] == {f"{ANN}/feature-labels": "vendor.io/a"}
