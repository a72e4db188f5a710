"""NodeUpdater against an in-memory Node store that speaks JSON patch like the
API server (the real API server is exercised by tests/e2e/test_master_*.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from nfd.master.kube import KubeNodes, NodeUpdater
from nfd.master.policy import Desired
from nfd.master.queue import NodeGone, Permanent
from tests.master import jsonpatch_apply

FNK = "feature.node.kubernetes.io"


class ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeNodes:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, list[dict[str, Any]], bool]] = []
        self.before_patch: Callable[[str], None] | None = None

    def add(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.nodes[name] = {
            "metadata": {"name": name, "resourceVersion": "1", "labels": dict(labels or {})},
            "spec": {},
            "status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "4"}},
        }

    def bump(self, name: str) -> None:
        meta = self.nodes[name]["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.nodes:
            raise ApiError(404)
        return copy.deepcopy(self.nodes[name])

    def patch(self, name: str, ops: list[dict[str, Any]], status: bool = False) -> dict[str, Any]:
        if self.before_patch:
            self.before_patch(name)
        self.patches.append((name, ops, status))
        try:
            new = jsonpatch_apply.apply_patch(copy.deepcopy(self.nodes[name]), ops)
        except jsonpatch_apply.PatchConflict:
            raise ApiError(422) from None
        self.nodes[name] = new
        self.bump(name)
        return copy.deepcopy(new)


def test_concurrent_writer_loses_nothing() -> None:
    fake = FakeNodes()
    fake.add("n")
    writes = iter(range(3))

    def kubectl_label(name: str) -> None:
        # A user labels the node between our read and our patch, three times.
        i = next(writes, None)
        if i is not None:
            fake.nodes[name]["metadata"]["labels"][f"user.io/l{i}"] = "x"
            fake.bump(name)

    fake.before_patch = kubectl_label
    updater = NodeUpdater(fake)  # type: ignore[arg-type]
    assert updater.apply("n", Desired(labels={f"{FNK}/a": "1"}))
    labels = fake.nodes["n"]["metadata"]["labels"]
    assert labels == {f"{FNK}/a": "1", "user.io/l0": "x", "user.io/l1": "x", "user.io/l2": "x"}
    assert len(fake.patches) == 4  # three refused by the resourceVersion test, one applied


def test_nothing_sent_when_nothing_changed() -> None:
    fake = FakeNodes()
    fake.add("n")
    updater = NodeUpdater(fake)  # type: ignore[arg-type]
    assert updater.apply("n", Desired(labels={f"{FNK}/a": "1"}))
    n = len(fake.patches)
    assert updater.apply("n", Desired(labels={f"{FNK}/a": "1"})) is False
    assert len(fake.patches) == n


def test_status_patch_goes_to_the_status_subresource_first() -> None:
    fake = FakeNodes()
    fake.add("n")
    updater = NodeUpdater(fake)  # type: ignore[arg-type]
    updater.apply("n", Desired(labels={"v.io/l": "1"}, extended_resources={"v.io/r": "2"}))
    assert [status for _, _, status in fake.patches] == [True, False]
    assert all(p[1][0]["op"] == "test" for p in fake.patches)
    assert fake.nodes["n"]["status"]["capacity"]["v.io/r"] == "2"
    ann = fake.nodes["n"]["metadata"]["annotations"]
    assert ann["nfd.node.kubernetes.io/extended-resources"] == "v.io/r"


def test_missing_node_is_permanent() -> None:
    with pytest.raises(Permanent):
        NodeUpdater(FakeNodes()).apply("gone", Desired())  # type: ignore[arg-type]


def test_gpu_stage_sees_merged_labels() -> None:
    fake = FakeNodes()
    fake.add("n", {"nvidia.com/gpu.deploy.driver": "false"})
    seen: list[dict[str, str]] = []

    def gpu(labels: Any, owned: set[str], hardware: bool) -> dict[str, str]:
        assert hardware is False  # no raw features in these updates
        seen.append(dict(labels))
        return {"nvidia.com/gpu.present": "true"} if labels.get(f"{FNK}/pci-10de.present") else {}

    updater = NodeUpdater(fake, gpu_fn=gpu)  # type: ignore[arg-type]
    updater.apply("n", Desired(labels={f"{FNK}/pci-10de.present": "true"}))
    labels = fake.nodes["n"]["metadata"]["labels"]
    assert labels["nvidia.com/gpu.present"] == "true"
    assert labels["nvidia.com/gpu.deploy.driver"] == "false"
    assert seen[0][f"{FNK}/pci-10de.present"] == "true"
    owned = fake.nodes["n"]["metadata"]["annotations"]["nfd.node.kubernetes.io/feature-labels"]
    assert owned == "nvidia.com/gpu.present,pci-10de.present"
    # The GPU label disappears: the stage no longer sees it and its label goes.
    updater.apply("n", Desired())
    assert "nvidia.com/gpu.present" not in fake.nodes["n"]["metadata"]["labels"]
    assert f"{FNK}/pci-10de.present" not in seen[-1]


def test_prune_removes_owned_and_nfd_annotations() -> None:
    fake = FakeNodes()
    fake.add("n", {"user.io/x": "1"})
    updater = NodeUpdater(fake)  # type: ignore[arg-type]
    updater.apply("n", Desired(labels={f"{FNK}/a": "1"}, extended_resources={"v.io/r": "1"}))
    fake.nodes["n"]["metadata"]["annotations"]["nfd.node.kubernetes.io/worker.version"] = "v0.14"
    assert updater.prune("n")
    n = fake.nodes["n"]
    assert n["metadata"]["labels"] == {"user.io/x": "1"}
    assert n["metadata"]["annotations"] == {}
    assert "v.io/r" not in n["status"]["capacity"]


class RecordingCore:
    """CoreV1Api stand-in: records calls, answers like an API server would."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def read_node(self, name: str, **kwargs: Any) -> Any:
        self.calls.append(name)
        raise ApiError(404)

    patch_node = patch_node_status = read_node


@pytest.mark.parametrize("name", ["n/status", "..", "a%2Fb", "n/../../namespaces", "N", ""])
def test_a_name_that_is_no_node_name_never_reaches_an_api_path(name: str) -> None:
    nodes = KubeNodes(None)
    nodes.core = RecordingCore()
    with pytest.raises(Permanent, match="invalid node name"):
        nodes.get(name)
    with pytest.raises(Permanent, match="invalid node name"):
        nodes.patch(name, [])
    with pytest.raises(Permanent, match="invalid node name"):
        NodeUpdater(nodes).apply(name, Desired(labels={f"{FNK}/a": "1"}))
    assert nodes.core.calls == []


@pytest.mark.parametrize("status", [400, 401, 403, 405, 413])
def test_a_permanent_api_error_is_not_retried(status: int) -> None:
    fake = FakeNodes()
    fake.add("n")

    def refuse(name: str) -> None:
        raise ApiError(status)

    fake.before_patch = refuse
    with pytest.raises(Permanent, match=str(status)):
        NodeUpdater(fake).apply("n", Desired(labels={f"{FNK}/a": "1"}))  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retried_by_the_queue(status: int) -> None:
    fake = FakeNodes()
    fake.add("n")

    def refuse(name: str) -> None:
        raise ApiError(status)

    fake.before_patch = refuse
    with pytest.raises(ApiError) as err:
        NodeUpdater(fake).apply("n", Desired(labels={f"{FNK}/a": "1"}))  # type: ignore[arg-type]
    assert not isinstance(err.value, Permanent)


def test_a_patch_refused_on_every_fresh_read_is_permanent() -> None:
    fake = FakeNodes()
    fake.add("n")

    def invalid(name: str) -> None:
        raise ApiError(422)

    fake.before_patch = invalid
    with pytest.raises(Permanent, match="422"):
        NodeUpdater(fake).apply("n", Desired(labels={f"{FNK}/a": "1"}))  # type: ignore[arg-type]
    assert len(fake.patches) == 0  # each refused before it was recorded


def test_a_missing_node_is_node_gone() -> None:
    with pytest.raises(NodeGone):
        NodeUpdater(FakeNodes()).apply("gone", Desired())  # type: ignore[arg-type]


def test_rule_failure_event_names_the_object_and_the_reason() -> None:
    from nfd.master.rules import rule_failure_event

    event = rule_failure_event("my-rules", "uid-1", "nfd", "rule 'x' failed: boom", True)
    assert event["involvedObject"] == {
        "apiVersion": "nfd.k8s-sigs.io/v1alpha1",
        "kind": "NodeFeatureRule",
        "name": "my-rules",
        "uid": "uid-1",
    }
    assert event["metadata"] == {"generateName": "my-rules.", "namespace": "nfd"}
    assert (event["type"], event["reason"]) == ("Warning", "RuleBudgetExceeded")
    assert rule_failure_event("r", "", "nfd", "m" * 5000, False)["reason"] == "RuleFailed"
    assert len(rule_failure_event("r", "", "nfd", "m" * 5000, False)["message"]) == 1000
