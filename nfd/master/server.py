"""gRPC server of nfd-master: upstream's Labeler (unary), our FeatureStream
(bidirectional) and grpc.health.v1.Health, all on one port (``--port``)."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from nfd._proto import (
    health_pb2,
    health_pb2_grpc,
    labeler_pb2,
    labeler_pb2_grpc,
    nfdstream_pb2,
    nfdstream_pb2_grpc,
)
from nfd.master.core import Master, Result, message_digest
from nfd.wire import MAX_LABELS, MAX_MESSAGE_BYTES, parse_set_labels_request

log = logging.getLogger("nfd-master")


@dataclass(frozen=True)
class TLSFiles:
    ca_file: str
    cert_file: str
    key_file: str


def _peer_names(context: Any) -> list[str]:
    auth = context.auth_context() or {}
    names = [v.decode() for v in auth.get("x509_common_name", [])]
    names += [v.decode() for v in auth.get("x509_subject_alternative_name", [])]
    return names


def _name_matches(node: str, names: Iterable[str]) -> bool:
    """CN equality or a DNS SAN that matches the node name (wildcards as Go's
    VerifyHostname: only a leftmost '*' label)."""
    node = node.lower()
    for name in names:
        name = name.lower()
        if name == node:
            return True
        if name.startswith("*.") and "." in node and fnmatch.fnmatchcase(node, name):
            if node.count(".") == name.count("."):
                return True
    return False


def _rejections(result: Result) -> list[nfdstream_pb2.Rejection]:
    return [
        nfdstream_pb2.Rejection(kind=r.kind, name=r.name, reason=r.reason) for r in result.rejected
    ]


class _Auth:
    def __init__(self, verify_node_name: bool) -> None:
        self.verify_node_name = verify_node_name

    async def check(self, context: Any, node: str) -> None:
        if not node:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_name is empty")
        if self.verify_node_name:
            names = _peer_names(context)
            if not _name_matches(node, names):
                log.warning(
                    "refused peer %s: certificate names %s do not match node %r",
                    context.peer(),
                    names,
                    node,
                )
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"client certificate ({', '.join(names) or 'no names'}) is not valid for "
                    f"node {node!r} (--verify-node-name)",
                )


async def _check_serving(context: Any, master: Master) -> None:
    # A standby replica (leader election) would accept and never write: send the
    # worker back so it reconnects, through the Service, to the leader.
    if not master.serving():
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, "this nfd-master replica is a standby, not the leader"
        )


async def _check_size(context: Any, labels: Any) -> None:
    if len(labels) > MAX_LABELS:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"too many labels: {len(labels)} (limit {MAX_LABELS})",
        )


class LabelerServicer(labeler_pb2_grpc.LabelerServicer):
    def __init__(self, master: Master, auth: _Auth) -> None:
        self.master, self.auth = master, auth

    async def SetLabels(self, request: Any, context: Any) -> Any:  # noqa: N802
        await _check_serving(context, self.master)
        await self.auth.check(context, request.node_name)
        await _check_size(context, request.labels)
        features = request.features if request.HasField("features") else None
        self.master.handle_update(
            request.node_name, request.labels, features, full=True, digest=message_digest(request)
        )
        return labeler_pb2.SetLabelsReply()


class StreamServicer(nfdstream_pb2_grpc.FeatureStreamServicer):
    def __init__(self, master: Master, auth: _Auth) -> None:
        self.master, self.auth = master, auth
        self.streams: dict[int, tuple[Any, asyncio.Lock]] = {}

    async def request_resync(self, reason: str) -> None:
        msg = nfdstream_pb2.MasterMessage(resync=nfdstream_pb2.ResyncRequest(reason=reason))
        for context, lock in list(self.streams.values()):
            try:
                async with lock:
                    await context.write(msg)
            except Exception as err:  # noqa: BLE001 - a dead stream is cleaned up by its reader
                log.debug("resync request failed: %s", err)

    async def Connect(self, request_iterator: Any, context: Any) -> None:  # noqa: N802
        node = ""
        lock = asyncio.Lock()
        try:
            while True:
                msg = await context.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.WhichOneof("msg") != "update":
                    continue  # keepalive
                up = msg.update
                if not node:
                    await _check_serving(context, self.master)
                    await self.auth.check(context, up.node_name)
                    node = up.node_name
                    self.master.stream_opened(node)
                    self.streams[id(context)] = (context, lock)
                    log.info("worker for node %s connected from %s", node, context.peer())
                elif up.node_name != node:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"stream is bound to node {node!r}, got an update for {up.node_name!r}",
                    )
                await _check_size(context, up.labels)
                features = up.features if up.HasField("features") else None
                result = self.master.handle_update(
                    node, up.labels, features, full=up.full, digest=message_digest(up)
                )
                ack = nfdstream_pb2.Ack(seq=up.seq, unchanged=result.unchanged)
                if not result.unchanged:
                    ack.labels.update(result.labels)
                    ack.rejected.extend(_rejections(result))
                reply = nfdstream_pb2.MasterMessage(ack=ack)
                # Drop the parsed messages before waiting for the next one: an idle stream
                # must not pin a request's protobuf arena (tens of KiB per node at scale).
                del msg, up, features, result, ack
                async with lock:
                    await context.write(reply)
                del reply
        finally:
            if node:
                self.streams.pop(id(context), None)
                self.master.stream_closed(node)
                log.info("worker for node %s disconnected", node)


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self) -> None:
        self.serving = True

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        return health_pb2.HealthCheckResponse(status=status)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _CertReloader:
    """Re-reads the CA/cert/key when one of the files changes (mtime), for gRPC's
    dynamic server credentials: rotated certificates apply to new connections."""

    def __init__(self, files: TLSFiles) -> None:
        self.files = files
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[float, ...]:
        f = self.files
        return tuple(os.stat(p).st_mtime_ns for p in (f.ca_file, f.cert_file, f.key_file))

    def config(self) -> Any:
        f = self.files
        return grpc.ssl_server_certificate_configuration(
            [(_read(f.key_file), _read(f.cert_file))], root_certificates=_read(f.ca_file)
        )

    def fetch(self) -> Any:
        try:
            stamp = self._stamp()
            if stamp == self.stamp:
                return None
            cfg = self.config()
        except OSError as err:
            log.warning("TLS files unreadable, keeping the old ones: %s", err)
            return None
        self.stamp = stamp
        log.info("TLS files changed: reloaded")
        return cfg


def server_credentials(files: TLSFiles) -> Any:
    reloader = _CertReloader(files)
    return grpc.dynamic_ssl_server_credentials(
        reloader.config(), reloader.fetch, require_client_authentication=True
    )


class GrpcServer:
    def __init__(
        self,
        master: Master,
        port: int,
        *,
        tls: TLSFiles | None = None,
        verify_node_name: bool = False,
        host: str = "[::]",
    ) -> None:
        if verify_node_name and tls is None:
            raise ValueError("--verify-node-name needs --ca-file, --cert-file and --key-file")
        self.master = master
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ]
        self.server = grpc.aio.server(options=options)
        auth = _Auth(verify_node_name)
        self.stream = StreamServicer(master, auth)
        self.health = HealthServicer()
        # As the generated add_LabelerServicer_to_server, with a deserializer that also
        # accepts the v0.10/v0.11 features field.
        labeler = grpc.method_handlers_generic_handler(
            "labeler.Labeler",
            {
                "SetLabels": grpc.unary_unary_rpc_method_handler(
                    LabelerServicer(master, auth).SetLabels,
                    request_deserializer=parse_set_labels_request,
                    response_serializer=labeler_pb2.SetLabelsReply.SerializeToString,
                )
            },
        )
        self.server.add_generic_rpc_handlers((labeler,))
        nfdstream_pb2_grpc.add_FeatureStreamServicer_to_server(self.stream, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        address = f"{host}:{port}"
        if tls is not None:
            self.port = self.server.add_secure_port(address, server_credentials(tls))
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float = 1.0) -> None:
        self.health.serving = False
        await self.server.stop(grace)
