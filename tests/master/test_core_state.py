"""What the master keeps per node is bounded: names checked, budgets, only Nodes that
exist, dropped when a Node goes (no gRPC, no API: tests/reliability/test_probe_state.py
runs the same against a real nfd-master and kube-apiserver)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import nfd.master.core as core
from nfd.features import Features
from nfd.master.core import InvalidUpdate, Master, UnknownNode, UpdateBudget, WorkItem
from nfd.master.policy import PolicyConfig
from nfd.master.queue import NodeGone
from nfd.wire import features_to_proto

BAD_NAMES = ["node/status", "..", "a%2Fb", "", "UPPER", "x" * 254, "-a", "a b"]


def wait(pred: Callable[[], object]) -> None:
    deadline = time.monotonic() + 5
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def refused(m: Master, reason: str) -> float:
    return float(m.metrics.updates_refused.labels(reason)._value.get())


def recorder() -> tuple[list[tuple[str, WorkItem]], Callable[[str, WorkItem], None]]:
    applied: list[tuple[str, WorkItem]] = []
    return applied, lambda n, i: applied.append((n, i))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_that_is_no_node_name_is_refused_before_anything_is_kept(name: str) -> None:
    applied, apply = recorder()
    m = Master(PolicyConfig(), apply)
    with pytest.raises(InvalidUpdate) as err:
        m.handle_update(name, {"a": "1"}, None)
    assert "node name" in str(err.value)
    assert m.node_names() == [] and applied == []
    assert refused(m, "invalid-node-name") == 1
    assert m.queue is not None
    with pytest.raises(ValueError):
        m.queue.put(name, WorkItem(core.Desired(), True))  # the queue checks too
    m.stop()


@pytest.mark.parametrize(
    ("budget", "labels", "feature_bytes", "named"),
    [
        (UpdateBudget(max_labels=3), {f"l{i}": "1" for i in range(4)}, 0, "budget of 3 labels"),
        (UpdateBudget(max_label_bytes=100), {"l": "v" * 100}, 0, "budget of 100 bytes of label"),
        (UpdateBudget(max_feature_bytes=1000), {}, 2000, "budget of 1000 bytes"),
        (UpdateBudget(max_state_bytes=200), {}, 2000, "state budget of 200 bytes"),
    ],
)
def test_an_update_over_a_budget_is_refused_naming_it(
    budget: UpdateBudget, labels: dict[str, str], feature_bytes: int, named: str
) -> None:
    applied, apply = recorder()
    m = Master(PolicyConfig(), apply, budget=budget)
    f = Features()
    if feature_bytes:
        # Random-looking values, so the compressed copy stays large too.
        import secrets

        f.add_attributes("x.y", {"v": secrets.token_hex(feature_bytes // 2)})
    with pytest.raises(InvalidUpdate, match=named):
        m.handle_update("n", labels, features_to_proto(f))
    assert m.node_names() == [] and applied == []
    assert refused(m, "over-budget") == 1
    m.handle_update("n", {"ok": "1"}, None)  # within budget: served
    wait(lambda: applied)
    m.stop()


def test_only_nodes_that_exist_have_state_and_a_deleted_one_loses_it() -> None:
    applied, apply = recorder()
    m = Master(PolicyConfig(), apply)
    m.handle_update("early", {"a": "1"}, None)  # before the Node watch listed: accepted
    m.handle_update("real", {"a": "1"}, None)
    m.set_known_nodes({"real", "other"})
    assert m.node_names() == ["real"]  # 'early' has no Node: dropped at the first list
    with pytest.raises(UnknownNode, match="does not exist"):
        m.handle_update("made-up", {"a": "1"}, None)
    assert "made-up" not in m.node_names()
    assert refused(m, "unknown-node") == 1
    m.node_added("made-up")
    m.handle_update("made-up", {"a": "1"}, None)
    assert sorted(m.node_names()) == ["made-up", "real"]
    m.node_deleted("real")
    assert m.node_names() == ["made-up"]
    assert m.metrics.node_states._value.get() == 1
    with pytest.raises(UnknownNode):
        m.handle_update("real", {"a": "2"}, None)
    m.stop()


def test_a_deleted_nodes_pending_write_is_dropped() -> None:
    gate = threading.Event()
    seen: list[str] = []

    def apply(node: str, item: WorkItem) -> None:
        gate.wait(5)
        seen.append(node)

    m = Master(PolicyConfig(), apply, parallelism=1)
    m.set_known_nodes({"a", "b"})
    m.handle_update("a", {"x": "1"}, None)  # taken by the one updater, blocks
    time.sleep(0.05)
    m.handle_update("b", {"x": "1"}, None)  # waits behind it
    m.node_deleted("b")
    gate.set()
    assert m.queue is not None and m.queue.wait_idle(5)
    assert seen == ["a"]
    m.stop()


def test_a_404_from_the_api_drops_the_nodes_state() -> None:
    def apply(node: str, item: WorkItem) -> None:
        raise NodeGone(f"node {node} not found")

    m = Master(PolicyConfig(), apply)
    m.handle_update("gone", {"x": "1"}, None)
    wait(lambda: m.metrics.updates_dropped._value.get() == 1)
    wait(lambda: m.node_names() == [])
    m.stop()


def test_a_stream_for_a_nonexistent_node_keeps_only_its_count() -> None:
    m = Master(PolicyConfig(), None)
    m.set_known_nodes({"real"})
    m.stream_opened("ghost")
    with pytest.raises(UnknownNode):
        m.handle_update("ghost", {"x": "1"}, None)
    assert m.node_names() == [] and m._streams == {"ghost": 1}
    m.stream_closed("ghost")
    assert m._streams == {}


def test_stream_close_makes_the_state_stale_only_after_the_last_stream() -> None:
    m = Master(PolicyConfig(), None)
    m.stream_opened("n")
    m.stream_opened("n")
    m.handle_update("n", {"x": "1"}, None)
    m.stream_closed("n")
    assert m._nodes["n"].fresh
    m.stream_closed("n")
    assert not m._nodes["n"].fresh


def test_without_a_node_watch_the_number_of_nodes_is_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "MAX_UNTRACKED_NODES", 5)
    m = Master(PolicyConfig(), None)
    for i in range(12):
        m.handle_update(f"n{i}", {"x": "1"}, None)
    assert m.node_names() == [f"n{i}" for i in range(7, 12)]


def test_rejections_are_logged_when_they_change_not_on_every_resend(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = Master(PolicyConfig(), None)
    with caplog.at_level(logging.WARNING, "nfd-master"):
        for i in range(3):
            # A changing good label makes each update new; the bad one stays the same.
            m.handle_update("n", {"bad name!": "1", "good": str(i)}, None)
        m.handle_update("n", {"other bad!": "1"}, None)
    rejected = [r.message for r in caplog.records if "rejected" in r.message]
    assert len(rejected) == 2, rejected


def test_memory_is_trimmed_soon_after_a_drop_at_most_once_per_interval() -> None:
    calls: list[int] = []
    trimmer = core._MemoryTrimmer(interval=0.2)
    trimmer._trim = lambda pad: calls.append(pad) or 1
    for _ in range(100):
        trimmer.note()
    assert calls == []
    wait(lambda: calls == [0])
    time.sleep(0.3)
    assert calls == [0]
    trimmer.note()
    wait(lambda: calls == [0, 0])


def test_dropping_a_nodes_state_trims() -> None:
    m = Master(PolicyConfig(), None)
    m._trimmer.interval = 0.01
    m.set_known_nodes({"n"})
    m.handle_update("n", {"x": "1"}, None)
    m.node_deleted("n")
    if m._trimmer._trim is not None:
        wait(lambda: m._trimmer.trims == 1)


def test_malloc_trim_is_found_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    trim: Any = core._malloc_trim()
    assert trim is not None and trim(0) in (0, 1)


def test_raw_pci_features_reach_gpu_marking_whatever_the_labels() -> None:
    """Raw PCI features of an NVIDIA GPU set the marking stage's hardware input, so a
    worker's deviceLabelFields cannot hide the GPU (gpu-operator #1469)."""
    applied, apply = recorder()
    m = Master(PolicyConfig(), apply)
    gpu = Features()
    gpu.add_instances("pci.device", [{"class": "0302", "vendor": "10de", "device": "2330"}])
    other = Features()
    other.add_instances("pci.device", [{"class": "0403", "vendor": "10de", "device": "22ba"}])
    m.handle_update("gpu-node", {"pci-0302_2330.present": "true"}, features_to_proto(gpu))
    m.handle_update("audio-node", {}, features_to_proto(other))
    m.handle_update("bare-node", {}, None)
    wait(lambda: len(applied) == 3)
    hardware = {node: item.desired.gpu_hardware for node, item in applied}
    assert hardware == {"gpu-node": True, "audio-node": False, "bare-node": False}
    m.stop()
