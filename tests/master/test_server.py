"""The master's gRPC services over real loopback connections."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from nfd._proto import (
    health_pb2,
    health_pb2_grpc,
    labeler_pb2,
    labeler_pb2_grpc,
    nfdstream_pb2,
    nfdstream_pb2_grpc,
)
from nfd.features import Features
from nfd.master.core import InvalidUpdate
from nfd.master.guards import CallLimits
from nfd.master.policy import PolicyConfig
from nfd.master.server import TLSFiles, dns_name_matches
from nfd.metrics_http import serve_http
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
    assert st.kept is not None
    req = st.kept.request()
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


# -- names at the edge ----------------------------------------------------------------


@pytest.mark.parametrize(
    "node, reason",
    [
        ("node-a/status", "not a lowercase DNS-1123 subdomain"),
        ("..", "not a lowercase DNS-1123 subdomain"),
        ("x%2Fy", "not a lowercase DNS-1123 subdomain"),
        ("Node-A", "not a lowercase DNS-1123 subdomain"),
        ("", "node name is empty"),
        ("a" * 254, "longer than 253"),
    ],
)
def test_bad_node_names_refused_before_anything(
    running_master: RunningMaster, node: str, reason: str
) -> None:
    with grpc.insecure_channel(running_master.address) as ch:
        with pytest.raises(grpc.RpcError) as unary:
            labeler_pb2_grpc.LabelerStub(ch).SetLabels(
                labeler_pb2.SetLabelsRequest(node_name=node, labels={"a": "1"}), timeout=5
            )
        msgs = [nfdstream_pb2.WorkerMessage(update=nfdstream_pb2.Update(seq=1, node_name=node))]
        with pytest.raises(grpc.RpcError) as stream:
            list(nfdstream_pb2_grpc.FeatureStreamStub(ch).Connect(iter(msgs), timeout=5))
    for err in (unary.value, stream.value):
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason in err.details()
    assert running_master.master.node_names() == []
    assert running_master.master.metrics.update_requests._value.get() == 0


def test_invalid_update_becomes_invalid_argument(
    running_master: RunningMaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(node: str, *args: object, **kwargs: object) -> None:
        raise InvalidUpdate(f"node {node}: 9000 labels over the per-node budget")

    monkeypatch.setattr(running_master.master, "handle_update", refuse)
    with grpc.insecure_channel(running_master.address) as ch:
        with pytest.raises(grpc.RpcError) as unary:
            _set(ch, "n1")
        up = nfdstream_pb2.Update(seq=1, node_name="n1", full=True)
        with pytest.raises(grpc.RpcError) as stream:
            list(
                nfdstream_pb2_grpc.FeatureStreamStub(ch).Connect(
                    iter([nfdstream_pb2.WorkerMessage(update=up)]), timeout=5
                )
            )
    for err in (unary.value, stream.value):
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "node n1: 9000 labels over the per-node budget"


# -- certificate names (Go's crypto/x509 hostname rules) --------------------------------


@pytest.mark.parametrize(
    "pattern, host, matches",
    [
        ("worker-1", "worker-1", True),
        ("Worker-1", "worker-1", True),
        ("worker-1", "worker-2", False),
        ("*.pool.example.com", "a.pool.example.com", True),
        ("*.POOL.example.com", "a.pool.example.com", True),
        ("*.pool.example.com", "pool.example.com", False),
        ("*.pool.example.com", "a.b.pool.example.com", False),
        ("*.pool.example.com", "hb-node/status/.pool.example.com", False),
        ("*.pool.example.com", "x/y.pool.example.com", False),
        ("*.pool.example.com", ".pool.example.com", False),
        ("*.pool.example.com", "a.pool.example.org", False),
        ("a*.pool.example.com", "ab.pool.example.com", False),  # partial wildcards: exact only
        ("a*.pool.example.com", "a*.pool.example.com", True),
        ("*.*.example.com", "a.b.example.com", False),
        ("pool.*.example.com", "pool.a.example.com", False),
        ("*", "worker", False),
        ("*.com", "example.com", True),
        ("", "worker", False),
    ],
)
def test_dns_name_matches_as_go(pattern: str, host: str, matches: bool) -> None:
    assert dns_name_matches(pattern, host) is matches


def test_wildcard_certificate_covers_one_label(pki: dict) -> None:  # type: ignore[type-arg]
    ca: CA = pki["ca"]
    m = start_master(tls=pki["tls"], verify_node_name=True)
    try:
        with _secure(m.address, ca, *ca.issue("pool-cert", ["*.pool.example.com"])) as ch:
            _set(ch, "a.pool.example.com")
            for node in ("b.a.pool.example.com", "pool.example.com"):
                with pytest.raises(grpc.RpcError) as info:
                    _set(ch, node)
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.RpcError) as info:
                _set(ch, "x/y.pool.example.com")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        m.stop()


# -- the serving loop never waits on an update ---------------------------------------------


def test_slow_node_stalls_neither_other_nodes_nor_health() -> None:
    release = threading.Event()
    m = start_master()
    real = m.master.handle_update

    def handle(node: str, *args: Any, **kwargs: Any) -> Any:
        if node == "slow":
            release.wait(30)
        return real(node, *args, **kwargs)

    m.master.handle_update = handle  # type: ignore[method-assign]
    try:
        with grpc.insecure_channel(m.address) as ch:
            stub = labeler_pb2_grpc.LabelerStub(ch)
            slow = stub.SetLabels.future(
                labeler_pb2.SetLabelsRequest(node_name="slow", labels={"a": "1"}), timeout=30
            )
            began = time.monotonic()
            for i in range(20):
                _set(ch, f"fast-{i}")
            health = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            took = time.monotonic() - began
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert not slow.done()
            release.set()
            slow.result(timeout=10)
        assert took < 5, took
        assert m.server.health_problem() is None
    finally:
        release.set()
        m.stop()


def test_one_nodes_updates_apply_in_order() -> None:
    first_entered, release = threading.Event(), threading.Event()
    m = start_master()
    real = m.master.handle_update
    seen: list[str] = []

    def handle(node: str, labels: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(labels["v"])
        if labels["v"] == "1":
            first_entered.set()
            release.wait(30)
        return real(node, labels, *args, **kwargs)

    m.master.handle_update = handle  # type: ignore[method-assign]
    try:
        with grpc.insecure_channel(m.address) as ch:
            stub = labeler_pb2_grpc.LabelerStub(ch)

            def send(v: str) -> Any:
                req = labeler_pb2.SetLabelsRequest(node_name="n", labels={"v": v})
                return stub.SetLabels.future(req, timeout=30)

            calls = [send("1")]
            assert first_entered.wait(10)
            calls += [send("2"), send("3")]
            time.sleep(0.3)  # time for a wrongly overtaking update to start
            assert seen == ["1"]
            release.set()
            for call in calls:
                call.result(timeout=10)
        assert seen[0] == "1" and sorted(seen) == ["1", "2", "3"]
    finally:
        release.set()
        m.stop()


def test_stuck_update_threads_turn_health_unhealthy() -> None:
    release = threading.Event()
    m = start_master(update_threads=2, stuck_after=0.5)
    m.master.handle_update = lambda *a, **k: release.wait(30)  # type: ignore[method-assign]
    try:
        with grpc.insecure_channel(m.address) as ch:
            stub = labeler_pb2_grpc.LabelerStub(ch)
            calls = [
                stub.SetLabels.future(
                    labeler_pb2.SetLabelsRequest(node_name=f"n{i}", labels={}), timeout=30
                )
                for i in range(2)
            ]
            wait_for(lambda: m.server.health_problem() is not None, 5)
            assert "all 2 update threads busy" in (m.server.health_problem() or "")
            health = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
            release.set()
            for call in calls:
                call.result(timeout=10)
        wait_for(lambda: m.server.health_problem() is None, 5)
    finally:
        release.set()
        m.stop()


# -- connection limits ------------------------------------------------------------------


def _silent_stream(ch: grpc.Channel) -> Any:
    """A stream that is opened and never sends anything."""
    never = threading.Event()

    def nothing():  # type: ignore[no-untyped-def]
        never.wait(30)
        yield from ()

    return nfdstream_pb2_grpc.FeatureStreamStub(ch).Connect(nothing(), timeout=30)


def test_silent_stream_cut_after_the_first_message_deadline() -> None:
    m = start_master(first_message_timeout=0.5)
    try:
        with grpc.insecure_channel(m.address) as ch:
            began = time.monotonic()
            with pytest.raises(grpc.RpcError) as info:
                list(_silent_stream(ch))
            took = time.monotonic() - began
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no update within 0.5 s" in info.value.details()
        assert took < 5
        wait_for(lambda: m.server.limits.open_calls == 0)
    finally:
        m.stop()


def test_open_calls_capped_overall() -> None:
    m = start_master(limits=CallLimits(per_peer=1, total=3))
    try:
        with grpc.insecure_channel(m.address) as ch:
            held = [_silent_stream(ch) for _ in range(3)]  # loopback: over the per-peer cap
            wait_for(lambda: m.server.limits.open_calls == 3)
            with pytest.raises(grpc.RpcError) as info:
                list(_silent_stream(ch))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert info.value.details() == "the master holds its limit of 3 open calls"
            with pytest.raises(grpc.RpcError) as unary:
                _set(ch, "n1")
            assert unary.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            for call in held:
                call.cancel()
            wait_for(lambda: m.server.limits.open_calls == 0)
            _set(ch, "n1")  # room again
    finally:
        m.stop()


def test_open_calls_capped_per_remote_peer() -> None:
    limits = CallLimits(per_peer=2, total=100)
    assert limits.enter("ipv4:10.0.0.1:1") is None
    assert limits.enter("ipv4:10.0.0.1:2") is None
    assert limits.enter("ipv4:10.0.0.1:3") == "ipv4:10.0.0.1 holds its limit of 2 open calls"
    assert limits.enter("ipv6:[fd00::7]:3") is None  # another peer
    for local in ("ipv4:127.0.0.1:4", "ipv4:127.0.0.6:5", "ipv6:[::1]:6", "unix:/run/x"):
        for _ in range(3):
            assert limits.enter(local) is None  # the pod itself (a mesh sidecar): no own cap
    assert limits.enter("ipv6:[::ffff:127.0.0.1]:7") is None
    limits.leave("ipv4:10.0.0.1:1")
    assert limits.enter("ipv4:10.0.0.1:8") is None
    assert limits.open_calls == 16


def test_clients_pinging_too_often_are_sent_away(running_master: RunningMaster) -> None:
    # Keepalive enforcement: pings more often than every 5 s cost strikes; after two
    # the master sends GOAWAY (too_many_pings) instead of answering pings for ever.
    options = [
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_timeout_ms", 1000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    done = threading.Event()

    def msgs():  # type: ignore[no-untyped-def]
        yield nfdstream_pb2.WorkerMessage(update=nfdstream_pb2.Update(seq=1, node_name="pinger"))
        done.wait(20)

    with grpc.insecure_channel(running_master.address, options=options) as ch:
        with pytest.raises(grpc.RpcError) as info:
            list(nfdstream_pb2_grpc.FeatureStreamStub(ch).Connect(msgs(), timeout=20))
    done.set()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "too many pings" in (info.value.details() or "").lower()


def test_healthz_answers_503_with_the_reason() -> None:
    problem: list[str] = []
    http = serve_http(
        0, CollectorRegistry(), host="127.0.0.1", health=lambda: next(iter(problem), None)
    )
    url = f"http://127.0.0.1:{http.server_address[1]}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            assert (r.status, r.read()) == (200, b"ok\n")
        problem.append("the gRPC serving loop has not run for 12 s")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url, timeout=5)
        assert info.value.code == 503
        assert info.value.read() == b"unhealthy: the gRPC serving loop has not run for 12 s\n"
    finally:
        http.shutdown()
