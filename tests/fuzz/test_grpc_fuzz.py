"""Fuzz the gRPC surface of nfd-master.

- Random bytes decoded as every generated protobuf message (nfd/_proto): only
  DecodeError may come out; what decodes goes through the master's pipeline.
- Random bytes sent on the wire to Labeler/SetLabels and FeatureStream/Connect of a
  real in-process master (real gRPC over loopback): never an unhandled exception in a
  servicer (status UNKNOWN), and the master keeps serving.
- Structured requests with arbitrary label names, values and features: every label
  either lands in the desired set (valid) or is rejected with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

from nfd._proto import (
    health_pb2,
    health_pb2_grpc,
    labeler_pb2,
    labeler_pb2_grpc,
    nfdstream_pb2,
    v1alpha1_pb2,
)
from nfd.labels import name_errors, node_name_error, value_errors
from nfd.master.core import Master, WorkItem
from nfd.master.policy import PolicyConfig, auto_prefix
from tests.fuzz.common import FUZZ, count
from tests.master.conftest import RunningMaster, start_master
from tests.reliability.recording import Record

MESSAGES = [
    cls
    for module in (labeler_pb2, nfdstream_pb2, v1alpha1_pb2, health_pb2)
    for cls in (getattr(module, name) for name in module.DESCRIPTOR.message_types_by_name)
]


def _pipeline() -> tuple[Master, list[tuple[str, WorkItem]]]:
    applied: list[tuple[str, WorkItem]] = []
    return Master(PolicyConfig(), lambda node, item: applied.append((node, item))), applied


MASTER, _APPLIED = _pipeline()


def _check_result(labels: Any, result: Any) -> None:
    for name, value in result.labels.items():
        assert not name_errors(name) and not value_errors(value), (name, value)
    handled = set(result.labels) | {r.name for r in result.rejected}
    assert {auto_prefix(k) for k in labels} <= handled | {"nvidia.com/gpu.present"}


def _feed(msg: Any) -> None:
    """What the servicers do with a decoded request, minus the transport."""
    if isinstance(msg, labeler_pb2.SetLabelsRequest):
        node, labels = msg.node_name or "fuzz", msg.labels
        features = msg.features if msg.HasField("features") else None
    elif isinstance(msg, nfdstream_pb2.WorkerMessage) and msg.WhichOneof("msg") == "update":
        node, labels = msg.update.node_name or "fuzz", msg.update.labels
        features = msg.update.features if msg.update.HasField("features") else None
    else:
        return
    if len(labels) > 10_000:
        return
    result = MASTER.handle_update(node, labels, features)
    if not result.unchanged:
        _check_result(labels, result)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_as_every_message(record: Record, data: bytes) -> None:
    count(record, f"Random bytes decoded as each of the {len(MESSAGES)} protobuf messages")
    for cls in MESSAGES:
        try:
            msg = cls.FromString(data)
        except DecodeError:
            continue
        _feed(msg)


@pytest.fixture(scope="module")
def master() -> Iterator[RunningMaster]:
    m = start_master()
    yield m
    m.stop()


def _assert_handled(err: grpc.RpcError) -> None:
    """UNKNOWN is what gRPC answers when a servicer raises: a crash on hostile input.
    The one exception is grpc.aio's own request decoding (before and inside
    ``context.read()``), which reports an undecodable message as UNKNOWN
    "Unexpected DecodeError" (and logs a traceback)."""
    if err.code() == grpc.StatusCode.UNKNOWN:
        assert "DecodeError" in (err.details() or ""), (err.code(), err.details())


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_random_bytes_on_the_wire(
    record: Record, master: RunningMaster, frames: list[bytes]
) -> None:
    count(record, "Random bytes on the wire to Labeler/SetLabels and FeatureStream/Connect")
    with grpc.insecure_channel(master.address) as channel:
        unary = channel.unary_unary("/labeler.Labeler/SetLabels")
        try:
            unary(frames[0], timeout=5)
        except grpc.RpcError as err:
            _assert_handled(err)
        stream = channel.stream_stream("/nfd.stream.v1.FeatureStream/Connect")
        try:
            for _reply in stream(iter(frames), timeout=5):
                pass
        except grpc.RpcError as err:
            _assert_handled(err)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


utf8 = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=70)
label_names = st.one_of(
    utf8,
    st.from_regex(r"[a-z0-9.\-]{0,20}/[A-Za-z0-9._\-]{0,70}", fullmatch=True),
    st.sampled_from(
        [
            "kubernetes.io/x",
            "node-role.kubernetes.io/worker",
            "nvidia.com/gpu.present",
            "feature.node.kubernetes.io/ok",
            "a.feature.node.kubernetes.io/ok",
            "",
            "/",
            "x/",
        ]
    ),
)


def _features_msg(flags: dict[str, list[str]], attrs: dict[str, dict[str, str]]) -> Any:
    msg = v1alpha1_pb2.Features()
    for name, elements in flags.items():
        for element in elements:
            msg.flags[name].elements[element].SetInParent()
    for name, values in attrs.items():
        msg.vattributes[name].elements.update(values)
    return msg


features_msgs = st.builds(
    _features_msg,
    st.dictionaries(utf8, st.lists(utf8, max_size=3), max_size=3),
    st.dictionaries(utf8, st.dictionaries(utf8, utf8, max_size=3), max_size=3),
)


@FUZZ
@given(st.dictionaries(label_names, utf8, max_size=20), features_msgs, utf8)
def test_structured_requests(
    record: Record,
    master: RunningMaster,
    labels: dict[str, str],
    features: Any,
    node: str,
) -> None:
    count(record, "Arbitrary label names/values, features and node names over real gRPC")
    request = labeler_pb2.SetLabelsRequest(node_name=node, labels=labels)
    request.features.CopyFrom(features)
    with grpc.insecure_channel(master.address) as channel:
        try:
            labeler_pb2_grpc.LabelerStub(channel).SetLabels(request, timeout=5)
        except grpc.RpcError as err:
            _assert_handled(err)
            # Only a name that cannot be a Node's is refused, and it is refused first.
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert node_name_error(node) is not None, (node, err.details())
    result = MASTER.handle_update(node or "fuzz", labels, features)
    if not result.unchanged:
        _check_result(labels, result)
