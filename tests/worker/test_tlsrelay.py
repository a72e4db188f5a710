"""nfd/worker/tlsrelay.py: the worker's own mTLS for masters that select no ALPN.

A real gRPC Labeler server (plaintext, loopback) sits behind a TLS front made with Python's
ssl module that, like upstream v0.16's master, requires a client certificate and selects no
ALPN protocol. grpcio's own TLS refuses that front; the Publisher gets through it with the
relay. A master that does select h2 (grpcio's TLS server) gets grpcio's own TLS, no relay.
The end-to-end version against the real upstream binary is
tests/e2e/test_upstream_wire.py::test_our_worker_to_upstream_master_mtls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from nfd._proto import labeler_pb2, labeler_pb2_grpc
from nfd.features import Features
from nfd.worker import tlsrelay
from nfd.worker.publish import Publisher, PublishError
from tests.master.certs import CA


class Capture(labeler_pb2_grpc.LabelerServicer):
    def __init__(self) -> None:
        self.requests: list[labeler_pb2.SetLabelsRequest] = []

    def SetLabels(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self.requests.append(request)
        return labeler_pb2.SetLabelsReply()


@pytest.fixture
def backend() -> Iterator[tuple[int, Capture]]:
    capture = Capture()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    labeler_pb2_grpc.add_LabelerServicer_to_server(capture, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, capture
    server.stop(grace=None)


@contextlib.contextmanager
def alpnless_front(backend_port: int, ca: CA, cert: Path, key: Path) -> Iterator[int]:
    """TLS on 127.0.0.1:<port>, client certificate required, no ALPN; plaintext to backend."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca.ca_file)
    ctx.verify_mode = ssl.CERT_REQUIRED
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx), loop
    ).result(10)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    ca = CA(tmp_path)
    master = ca.issue("nfd-master", ["nfd-master"], server=True)
    worker = ca.issue("worker-1", ["worker-1"])
    return {"ca": ca, "master": master, "worker": worker}


def publisher(port: int, pki: dict, node: str = "worker-1") -> Publisher:  # type: ignore[type-arg]
    ca: CA = pki["ca"]  # type: ignore[assignment]
    cert, key = pki["worker"]  # type: ignore[misc]
    return Publisher(f"127.0.0.1:{port}", node, str(ca.ca_file), str(cert), str(key), "nfd-master")


def test_alpnless_master_is_reached_through_the_relay(backend, pki) -> None:  # type: ignore[no-untyped-def]
    port, capture = backend
    with alpnless_front(port, pki["ca"], *pki["master"]) as front:
        p = publisher(front, pki)
        ctx = tlsrelay.client_context(p.ca_file, p.cert_file, p.key_file)  # type: ignore[arg-type]
        assert tlsrelay.negotiates_h2("127.0.0.1", front, ctx, "nfd-master") is False
        p.publish_once({"a": "1"}, Features(), timeout=10)
        assert p._relay is not None
    assert [(r.node_name, dict(r.labels)) for r in capture.requests] == [("worker-1", {"a": "1"})]


def test_grpcio_alone_is_refused_by_the_same_master(backend, pki) -> None:  # type: ignore[no-untyped-def]
    """Why the relay exists: grpcio's TLS fails on the ALPN check, whatever the certificates."""
    port, _ = backend
    ca: CA = pki["ca"]
    cert, key = pki["worker"]
    with alpnless_front(port, ca, *pki["master"]) as front:
        creds = grpc.ssl_channel_credentials(
            ca.ca_file.read_bytes(), key.read_bytes(), cert.read_bytes()
        )
        options = [("grpc.ssl_target_name_override", "nfd-master")]
        with grpc.secure_channel(f"127.0.0.1:{front}", creds, options=options) as ch:
            with pytest.raises(grpc.RpcError) as info:
                labeler_pb2_grpc.LabelerStub(ch).SetLabels(
                    labeler_pb2.SetLabelsRequest(node_name="worker-1"), timeout=5
                )
    assert "ALPN" in info.value.details()


def test_a_master_with_h2_gets_grpcio_tls(pki) -> None:  # type: ignore[no-untyped-def]
    ca: CA = pki["ca"]
    mcert, mkey = pki["master"]
    capture = Capture()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    labeler_pb2_grpc.add_LabelerServicer_to_server(capture, server)
    creds = grpc.ssl_server_credentials(
        [(mkey.read_bytes(), mcert.read_bytes())], ca.ca_file.read_bytes(), True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        p = publisher(port, pki)
        p.publish_once({"b": "2"}, Features(), timeout=10)
        assert p._relay is None
    finally:
        server.stop(grace=None)
    assert len(capture.requests) == 1


def test_wrong_server_name_is_refused(backend, pki) -> None:  # type: ignore[no-untyped-def]
    port, capture = backend
    with alpnless_front(port, pki["ca"], *pki["master"]) as front:
        p = publisher(front, pki)
        p.server_name_override = "not-the-master"
        with pytest.raises(PublishError):
            p.publish_once({"a": "1"}, Features(), timeout=5)
    assert capture.requests == []


@pytest.mark.parametrize(
    ("server", "want"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("nfd-master:8080", ("nfd-master", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        ("dns:///nfd-master:8080", None),
        ("unix:/run/x.sock", None),
        ("nfd-master", None),
        ("::1", None),
    ],
)
def test_split_target(server: str, want: tuple[str, int] | None) -> None:
    assert tlsrelay.split_target(server) == want


def test_relay_close_removes_its_socket(pki) -> None:  # type: ignore[no-untyped-def]
    ca: CA = pki["ca"]
    cert, key = pki["worker"]
    relay = tlsrelay.TlsRelay(
        "127.0.0.1", 1, tlsrelay.client_context(str(ca.ca_file), str(cert), str(key)), "x"
    )
    sock = Path(relay.path)
    assert sock.exists() and (sock.parent.stat().st_mode & 0o077) == 0
    relay.close()
    assert not sock.parent.exists()


def test_daemon_mode_falls_back_to_set_labels_through_the_relay(backend, pki) -> None:  # type: ignore[no-untyped-def]
    """The long-running publisher: FeatureStream is UNIMPLEMENTED on a Labeler-only master
    (upstream v0.16), so it falls back to SetLabels, all through the relay."""
    port, capture = backend
    with alpnless_front(port, pki["ca"], *pki["master"]) as front:
        p = publisher(front, pki)
        p.update({"c": "3"}, Features())
        p.start()
        try:
            deadline = time.monotonic() + 20
            while not capture.requests and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            p.close()
    assert capture.requests, "no SetLabels through the relay"
    assert dict(capture.requests[0].labels) == {"c": "3"}
