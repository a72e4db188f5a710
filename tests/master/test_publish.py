"""The worker's Publisher against a real master over loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from nfd._proto import labeler_pb2, labeler_pb2_grpc
from nfd.features import Features
from nfd.wire import features_from_proto
from nfd.worker.publish import Publisher, PublishError
from tests.master.conftest import RunningMaster, start_master

FNK = "feature.node.kubernetes.io"


def wait_for(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def feats(**attrs: str) -> Features:
    f = Features()
    f.add_attributes("test.attrs", attrs)
    return f


def labels_applied(m: RunningMaster, node: str) -> list[dict[str, str]]:
    return [item.desired.labels for n, item in m.applied if n == node]


def test_publish_once(running_master: RunningMaster) -> None:
    p = Publisher(running_master.address, "n1")
    p.publish_once({"a": "1", "kubernetes.io/x": "y"}, feats(k="v"), timeout=5)
    assert dict(p.last_ack.labels) == {f"{FNK}/a": "1"}
    assert [r.name for r in p.last_ack.rejected] == ["kubernetes.io/x"]
    wait_for(lambda: labels_applied(running_master, "n1"))


def test_publish_once_unreachable_is_a_clear_error() -> None:
    p = Publisher("127.0.0.1:1", "n1")
    with pytest.raises(PublishError, match=r"cannot publish to master 127.0.0.1:1: UNAVAILABLE"):
        p.publish_once({"a": "1"}, Features(), timeout=2)


def test_tls_files_must_come_together() -> None:
    with pytest.raises(PublishError, match="together"):
        Publisher("x:1", "n", ca_file="ca.crt")


@pytest.fixture
def publisher_factory() -> Iterator[Any]:
    made: list[Publisher] = []

    def make(address: str, node: str, **kw: Any) -> Publisher:
        p = Publisher(address, node, keepalive=kw.pop("keepalive", 0.5), max_backoff=0.5, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def test_stream_sends_only_changes(running_master: RunningMaster, publisher_factory) -> None:  # type: ignore[no-untyped-def]
    p = publisher_factory(running_master.address, "n2")
    p.start()
    p.update({"a": "1"}, feats(k="1"))
    wait_for(lambda: labels_applied(running_master, "n2"))
    p.update({"a": "1"}, feats(k="1"))  # same: nothing sent
    time.sleep(1.2)  # a couple of keepalives
    assert running_master.master.metrics.update_requests._value.get() == 1
    p.update({"a": "2"}, feats(k="1"))
    wait_for(lambda: {f"{FNK}/a": "2"} in labels_applied(running_master, "n2"))
    assert p.mode == "stream"


def test_resync_request_resends_snapshot(running_master: RunningMaster, publisher_factory) -> None:  # type: ignore[no-untyped-def]
    p = publisher_factory(running_master.address, "n3")
    p.start()
    p.update({"a": "1"}, Features())
    wait_for(lambda: p.connected.is_set())
    before = running_master.master.metrics.update_requests._value.get()
    asyncio.run_coroutine_threadsafe(
        running_master.server.stream.request_resync("test"), running_master.loop
    ).result(5)
    wait_for(lambda: running_master.master.metrics.update_requests._value.get() > before)


def test_reconnects_and_republishes_after_master_restart(publisher_factory) -> None:  # type: ignore[no-untyped-def]
    m1 = start_master()
    port = m1.server.port
    p = publisher_factory(m1.address, "n4")
    p.start()
    p.update({"a": "1"}, feats(x="1"))
    wait_for(lambda: labels_applied(m1, "n4"))
    m1.stop()
    m2 = start_master(port=port)
    try:
        # Nothing changed on the worker, yet the new master gets the full snapshot.
        wait_for(lambda: labels_applied(m2, "n4"), timeout=15)
        node, item = [x for x in m2.applied if x[0] == "n4"][0]
        assert item.desired.labels == {f"{FNK}/a": "1"} and item.allow_remove
    finally:
        m2.stop()


class _UpstreamMaster(labeler_pb2_grpc.LabelerServicer):
    """Only upstream's unary Labeler, like an nfd-master v0.16."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def SetLabels(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.requests.append(request)
        return labeler_pb2.SetLabelsReply()


@pytest.fixture
def upstream_master() -> Iterator[tuple[str, _UpstreamMaster]]:
    from concurrent import futures

    servicer = _UpstreamMaster()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    labeler_pb2_grpc.add_LabelerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


def test_falls_back_to_unary_for_upstream_master(upstream_master, publisher_factory) -> None:  # type: ignore[no-untyped-def]
    address, servicer = upstream_master
    Publisher(address, "n5").publish_once({"a": "1"}, feats(k="v"), timeout=5)
    assert servicer.requests[-1].node_name == "n5"
    p = publisher_factory(address, "n6")
    p.start()
    p.update({"b": "2"}, feats(k="v"))
    wait_for(lambda: any(r.node_name == "n6" for r in servicer.requests))
    req = [r for r in servicer.requests if r.node_name == "n6"][-1]
    assert dict(req.labels) == {"b": "2"}
    assert features_from_proto(req.features).attributes == {"test.attrs": {"k": "v"}}
    assert p.mode == "unary"


def test_never_exits_while_master_is_down(publisher_factory) -> None:  # type: ignore[no-untyped-def]
    m = start_master()
    port = m.server.port
    m.stop()
    p = publisher_factory(f"127.0.0.1:{port}", "n7")
    p.start()
    p.update({"a": "1"}, Features())
    time.sleep(1.5)
    assert p._thread is not None and p._thread.is_alive()
    m2 = start_master(port=port)
    try:
        wait_for(lambda: labels_applied(m2, "n7"), timeout=15)
    finally:
        m2.stop()
    threading.Event().wait(0)


def test_publisher_reloads_rotated_tls_files(tmp_path: Path, publisher_factory) -> None:  # type: ignore[no-untyped-def]
    from nfd.master.server import TLSFiles
    from tests.master.certs import CA

    def pki(name: str) -> tuple[CA, TLSFiles, tuple[Path, Path]]:
        d = tmp_path / name
        d.mkdir()
        ca = CA(d, f"{name}-ca")
        cert, key = ca.issue("nfd-master", ["nfd-master"], server=True)
        return ca, TLSFiles(str(ca.ca_file), str(cert), str(key)), ca.issue("n8")

    old_ca, old_tls, old_client = pki("old")
    new_ca, new_tls, new_client = pki("new")
    # The worker's files, rewritten in place on rotation.
    ca_file, cert_file, key_file = tmp_path / "ca.crt", tmp_path / "w.crt", tmp_path / "w.key"
    ca_file.write_bytes(old_ca.ca_file.read_bytes())
    cert_file.write_bytes(old_client[0].read_bytes())
    key_file.write_bytes(old_client[1].read_bytes())

    m1 = start_master(tls=old_tls)
    port = m1.server.port
    p = publisher_factory(
        m1.address,
        "n8",
        ca_file=str(ca_file),
        cert_file=str(cert_file),
        key_file=str(key_file),
        server_name_override="nfd-master",
    )
    p.start()
    p.update({"a": "1"}, Features())
    wait_for(lambda: labels_applied(m1, "n8"))
    # The cluster rotates to a new CA: master restarted with new certs, worker files rewritten.
    m1.stop()
    m2 = start_master(tls=new_tls, port=port)
    try:
        time.sleep(1.0)
        ca_file.write_bytes(new_ca.ca_file.read_bytes())
        cert_file.write_bytes(new_client[0].read_bytes())
        key_file.write_bytes(new_client[1].read_bytes())
        wait_for(lambda: labels_applied(m2, "n8"), timeout=20)
    finally:
        m2.stop()
