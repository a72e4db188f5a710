"""The master's gRPC services over real loopback connections."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from nfd._proto import (
    health_pb2,
    health_pb2_grpc,
    labeler_pb2,
    labeler_pb2_grpc,
    nfdstream_pb2,
    nfdstream_pb2_grpc,
)
from nfd.features import Features
from nfd.master.policy import PolicyConfig
from nfd.master.server import TLSFiles
from nfd.wire import MAX_LABELS, features_to_proto
from tests.master.certs import CA
from tests.master.conftest import RunningMaster, start_master

FNK = "feature.node.kubernetes.io"


def wait_for(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _ld(field: int, payload: bytes) -> bytes:
    """Protobuf length-delimited field, encoded by hand (independent of our protos)."""
    assert len(payload) < 128
    return bytes([(field << 3) | 2, len(payload)]) + payload


def test_upstream_labeler_bytes_decode(running_master: RunningMaster) -> None:
    # SetLabelsRequest as an upstream v0.12-v0.16 worker encodes it: node_name (2),
    # labels map (3), features (4) with vattributes (2) -> AttributeFeatureSet.elements (1).
    attr_set = _ld(1, _ld(1, b"major") + _ld(2, b"6"))
    features = _ld(2, _ld(1, b"kernel.version") + _ld(2, attr_set))
    flag_set = _ld(1, _ld(1, b"AVX") + _ld(2, b""))
    features += _ld(1, _ld(1, b"cpu.cpuid") + _ld(2, flag_set))
    raw = (
        _ld(1, b"v0.16.0")
        + _ld(2, b"node-a")
        + _ld(3, _ld(1, b"cpu-cpuid.AVX") + _ld(2, b"true"))
        + _ld(4, features)
    )
    with grpc.insecure_channel(running_master.address) as ch:
        call = ch.unary_unary("/labeler.Labeler/SetLabels")
        assert call(raw, timeout=5) == b""
    wait_for(lambda: running_master.applied)
    node, item = running_master.applied[0]
    assert node == "node-a"
    assert item.desired.labels == {f"{FNK}/cpu-cpuid.AVX": "true"}
    st = running_master.master._nodes["node-a"]
    req = labeler_pb2.SetLabelsRequest.FromString(__import__("zlib").decompress(st.blob))
    assert dict(req.features.vattributes["kernel.version"].elements) == {"major": "6"}
    assert set(req.features.flags["cpu.cpuid"].elements) == {"AVX"}


def test_v010_domain_features_field_keeps_the_labels(running_master: RunningMaster) -> None:
    # v0.10/v0.11 field 4: map<string, DomainFeatures> entries {1: "cpu", 2: {1: keys map}}.
    keys = _ld(1, _ld(1, b"cpuid") + _ld(2, _ld(1, _ld(1, b"AVX") + _ld(2, b""))))
    entry = _ld(1, b"cpu") + _ld(2, keys)
    raw = _ld(2, b"node-old") + _ld(3, _ld(1, b"cpu-cpuid.AVX") + _ld(2, b"true"))
    raw += _ld(4, entry)
    with grpc.insecure_channel(running_master.address) as ch:
        assert ch.unary_unary("/labeler.Labeler/SetLabels")(raw, timeout=5) == b""
    wait_for(lambda: running_master.applied)
    node, item = running_master.applied[0]
    assert node == "node-old"
    assert item.desired.labels == {f"{FNK}/cpu-cpuid.AVX": "true"}


def test_unary_set_labels(running_master: RunningMaster) -> None:
    f = Features()
    f.add_attributes("kernel.version", {"major": "6"})
    req = labeler_pb2.SetLabelsRequest(nfd_version="x", node_name="n1", labels={"a": "1"})
    req.features.CopyFrom(features_to_proto(f))
    with grpc.insecure_channel(running_master.address) as ch:
        labeler_pb2_grpc.LabelerStub(ch).SetLabels(req, timeout=5)
        # An identical resend writes nothing.
        labeler_pb2_grpc.LabelerStub(ch).SetLabels(req, timeout=5)
    wait_for(lambda: running_master.applied)
    time.sleep(0.1)
    assert [n for n, _ in running_master.applied] == ["n1"]
    assert running_master.master.metrics.update_requests._value.get() == 2


def test_stream_acks_rejections_and_unchanged(running_master: RunningMaster) -> None:
    def msgs():  # type: ignore[no-untyped-def]
        up = nfdstream_pb2.Update(seq=1, node_name="n2", full=True)
        up.labels.update({"a": "1", "kubernetes.io/evil": "x"})
        yield nfdstream_pb2.WorkerMessage(update=up)
        yield nfdstream_pb2.WorkerMessage(keepalive=nfdstream_pb2.Keepalive())
        up.seq = 2
        yield nfdstream_pb2.WorkerMessage(update=up)

    with grpc.insecure_channel(running_master.address) as ch:
        replies = list(nfdstream_pb2_grpc.FeatureStreamStub(ch).Connect(msgs(), timeout=5))
    acks = [r.ack for r in replies]
    assert [a.seq for a in acks] == [1, 2]
    assert dict(acks[0].labels) == {f"{FNK}/a": "1"}
    assert [(r.name, r.kind) for r in acks[0].rejected] == [("kubernetes.io/evil", "label")]
    assert acks[1].unchanged and not acks[1].labels
    wait_for(lambda: running_master.applied)
    assert len(running_master.applied) == 1


def test_stream_bound_to_one_node(running_master: RunningMaster) -> None:
    def msgs():  # type: ignore[no-untyped-def]
        yield nfdstream_pb2.WorkerMessage(update=nfdstream_pb2.Update(seq=1, node_name="a"))
        yield nfdstream_pb2.WorkerMessage(update=nfdstream_pb2.Update(seq=2, node_name="b"))

    with grpc.insecure_channel(running_master.address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            list(nfdstream_pb2_grpc.FeatureStreamStub(ch).Connect(msgs(), timeout=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bound to node 'a'" in info.value.details()


def test_hostile_sizes_refused(running_master: RunningMaster) -> None:
    many = {f"l{i}": "v" for i in range(MAX_LABELS + 1)}
    with grpc.insecure_channel(
        running_master.address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as ch:
        stub = labeler_pb2_grpc.LabelerStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.SetLabels(labeler_pb2.SetLabelsRequest(node_name="n", labels=many), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "too many labels" in info.value.details()
        huge = labeler_pb2.SetLabelsRequest(node_name="n", labels={"a": "x" * (17 << 20)})
        with pytest.raises(grpc.RpcError) as info:
            stub.SetLabels(huge, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The master still serves.
        stub.SetLabels(labeler_pb2.SetLabelsRequest(node_name="n", labels={"a": "1"}), timeout=5)
    assert running_master.applied == [] or running_master.applied[-1][0] == "n"


def test_health(running_master: RunningMaster) -> None:
    with grpc.insecure_channel(running_master.address) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_no_removal_after_stream_loss(running_master: RunningMaster) -> None:
    """While the worker is connected a re-evaluation may remove labels; once its
    stream is gone only adds/updates are allowed."""
    m = running_master.master
    applied = running_master.applied

    def step(action) -> bool:  # type: ignore[no-untyped-def]
        # One action at a time: queued items for one node would coalesce.
        before = len(applied)
        action()
        wait_for(lambda: len(applied) > before)
        return applied[-1][1].allow_remove

    m.stream_opened("n3")
    assert step(lambda: m.handle_update("n3", {"a": "1"}, None)) is True
    assert step(lambda: m.set_rules([])) is True  # re-evaluation (as after a rule change)
    m.stream_closed("n3")
    assert step(lambda: m.set_rules([])) is False
    # The worker is back with a full snapshot: removal allowed again.
    m.stream_opened("n3")
    assert step(lambda: m.handle_update("n3", {"b": "1"}, None, full=True)) is True


# -- mTLS ---------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    ca = CA(tmp_path)
    other = CA(tmp_path, "evil-ca")
    master_cert, master_key = ca.issue("nfd-master", ["nfd-master", "localhost"], server=True)
    return {
        "ca": ca,
        "other": other,
        "tls": TLSFiles(str(ca.ca_file), str(master_cert), str(master_key)),
    }


def _secure(address: str, ca: CA, cert: Path, key: Path) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        ca.ca_file.read_bytes(), key.read_bytes(), cert.read_bytes()
    )
    return grpc.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", "nfd-master")]
    )


def _set(ch: grpc.Channel, node: str) -> None:
    labeler_pb2_grpc.LabelerStub(ch).SetLabels(
        labeler_pb2.SetLabelsRequest(node_name=node, labels={"a": "1"}), timeout=5
    )


def test_mtls_and_verify_node_name(pki: dict) -> None:  # type: ignore[type-arg]
    ca: CA = pki["ca"]
    m = start_master(tls=pki["tls"], verify_node_name=True)
    try:
        good = ca.issue("worker-1")
        with _secure(m.address, ca, *good) as ch:
            _set(ch, "worker-1")
            with pytest.raises(grpc.RpcError) as info:
                _set(ch, "worker-2")
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "worker-2" in info.value.details()
        san = ca.issue("some-cn", ["worker-3"])
        with _secure(m.address, ca, *san) as ch:
            _set(ch, "worker-3")
        # A certificate from another CA is refused at the TLS handshake.
        evil: CA = pki["other"]
        bad = evil.issue("worker-1")
        with _secure(m.address, ca, *bad) as ch:
            with pytest.raises(grpc.RpcError) as info:
                _set(ch, "worker-1")
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # No client certificate at all: refused too.
        creds = grpc.ssl_channel_credentials(ca.ca_file.read_bytes())
        with grpc.secure_channel(
            m.address, creds, options=[("grpc.ssl_target_name_override", "nfd-master")]
        ) as ch:
            with pytest.raises(grpc.RpcError):
                _set(ch, "worker-1")
        # Plaintext: refused.
        with grpc.insecure_channel(m.address) as ch:
            with pytest.raises(grpc.RpcError):
                _set(ch, "worker-1")
        assert {n for n, _ in m.applied} <= {"worker-1", "worker-3"}
        wait_for(lambda: {n for n, _ in m.applied} == {"worker-1", "worker-3"})
    finally:
        m.stop()


def test_policy_config_passed_through() -> None:
    m = start_master(PolicyConfig(label_whitelist="^keep"))
    try:
        with grpc.insecure_channel(m.address) as ch:
            labeler_pb2_grpc.LabelerStub(ch).SetLabels(
                labeler_pb2.SetLabelsRequest(node_name="n", labels={"keep-a": "1", "drop": "1"}),
                timeout=5,
            )
        wait_for(lambda: m.applied)
        assert m.applied[0][1].desired.labels == {f"{FNK}/keep-a": "1"}
        assert m.master.metrics.labels_rejected._value.get() == 1
    finally:
        m.stop()


def test_master_reloads_rotated_certificates(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    old_ca = CA(tmp_path / "old")
    cert, key = old_ca.issue("nfd-master", ["nfd-master"], server=True)
    tls = TLSFiles(str(tmp_path / "ca.crt"), str(tmp_path / "master.crt"), str(tmp_path / "m.key"))
    Path(tls.ca_file).write_bytes(old_ca.ca_file.read_bytes())
    Path(tls.cert_file).write_bytes(cert.read_bytes())
    Path(tls.key_file).write_bytes(key.read_bytes())
    m = start_master(tls=tls)
    try:
        with _secure(m.address, old_ca, *old_ca.issue("w1")) as ch:
            _set(ch, "w1")
        # Rotate to a new CA and master certificate without restarting the master.
        (tmp_path / "new").mkdir()
        new_ca = CA(tmp_path / "new", "new-ca")
        cert2, key2 = new_ca.issue("nfd-master", ["nfd-master"], server=True)
        Path(tls.ca_file).write_bytes(new_ca.ca_file.read_bytes())
        Path(tls.cert_file).write_bytes(cert2.read_bytes())
        Path(tls.key_file).write_bytes(key2.read_bytes())
        with _secure(m.address, new_ca, *new_ca.issue("w2")) as ch:
            _set(ch, "w2")
        with _secure(m.address, old_ca, *old_ca.issue("w3")) as ch:
            with pytest.raises(grpc.RpcError):
                _set(ch, "w3")
    finally:
        m.stop()
