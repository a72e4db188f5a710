"""gRPC server of nfd-master: upstream's Labeler (unary), our FeatureStream
(bidirectional) and grpc.health.v1.Health, all on one port (``--port``).

Every call that names a node is checked in this order, each failure ending it:
the node name (INVALID_ARGUMENT), leadership (UNAVAILABLE), the certificate
(PERMISSION_DENIED, --verify-node-name), the label count (INVALID_ARGUMENT) and the
open-call caps (RESOURCE_EXHAUSTED; a stream counts from its opening, so for it they
come first, with a deadline for its first update). The update itself runs off the
event loop (nfd.master.guards); connection hygiene is grpc core's (SERVER_OPTIONS).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from nfd import origins
from nfd._proto import (
    health_pb2,
    health_pb2_grpc,
    labeler_pb2,
    labeler_pb2_grpc,
    nfdstream_pb2,
    nfdstream_pb2_grpc,
)
from nfd.labels import node_name_error
from nfd.master.core import InvalidUpdate, Master, Result, message_digest
from nfd.master.guards import (
    FIRST_MESSAGE_TIMEOUT_S,
    STUCK_AFTER_S,
    UPDATE_THREADS,
    CallLimits,
    LoopHeartbeat,
    UpdateRunner,
    in_daemon_thread,
)
from nfd.master.process import release_free_memory
from nfd.wire import MAX_LABELS, MAX_MESSAGE_BYTES, parse_set_labels_request

log = logging.getLogger("nfd-master")


@dataclass(frozen=True)
class TLSFiles:
    ca_file: str
    cert_file: str
    key_file: str


def _peer_names(context: Any) -> tuple[list[str], list[str]]:
    """The client certificate's common names and subject alternative names."""
    auth = context.auth_context() or {}
    common = [v.decode(errors="replace") for v in auth.get("x509_common_name", [])]
    alternative = [
        v.decode(errors="replace") for v in auth.get("x509_subject_alternative_name", [])
    ]
    return common, alternative


# Host names and certificate name patterns as Go's x509 validHostname: labels of
# letters, digits, '_' and non-leading '-'; in a pattern '*' may be the whole first label.
_LABEL = r"[A-Za-z0-9_][-A-Za-z0-9_]*"
_DNS_PATTERN = re.compile(rf"(\*|{_LABEL})(\.{_LABEL})*")
_DNS_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def dns_name_matches(pattern: str, host: str) -> bool:
    """Whether a certificate's DNS name covers ``host``, as Go's x509 VerifyHostname
    decides: between valid host names, a leading ``*`` label stands for exactly one
    label of the host (``*.pool.example.com`` covers ``a.pool.example.com``, never
    ``a.b.pool.example.com`` nor a name with '/'); anything else matches only exactly,
    ignoring case."""
    pattern, host = pattern.lower(), host.lower()
    if not pattern or not host:
        return False
    if pattern == "*" or not _DNS_PATTERN.fullmatch(pattern) or not _DNS_NAME.fullmatch(host):
        return pattern == host
    pattern_labels, host_labels = pattern.split("."), host.split(".")
    if len(pattern_labels) != len(host_labels):
        return False
    pairs = enumerate(zip(pattern_labels, host_labels, strict=True))
    return all(p == h or (i == 0 and p == "*") for i, (p, h) in pairs)


def _name_matches(node: str, common_names: Iterable[str], dns_names: Iterable[str]) -> bool:
    """The certificate is valid for ``node``: its CN equals it (upstream's first rule),
    or a DNS subject alternative name covers it."""
    return node.lower() in (cn.lower() for cn in common_names) or any(
        dns_name_matches(name, node) for name in dns_names
    )


def _rejections(result: Result) -> list[nfdstream_pb2.Rejection]:
    return [
        nfdstream_pb2.Rejection(kind=r.kind, name=r.name, reason=r.reason) for r in result.rejected
    ]


class _Auth:
    def __init__(self, verify_node_name: bool) -> None:
        self.verify_node_name = verify_node_name

    async def check(self, context: Any, node: str) -> None:
        if self.verify_node_name:
            common, alternative = _peer_names(context)
            names = common + alternative
            if not _name_matches(node, common, alternative):
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


async def _check_node_name(context: Any, node: str) -> None:
    # Before anything else: the name goes into API paths (node/status, '..').
    problem = node_name_error(node)
    if problem:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


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


@dataclass
class _Serving:
    """What every servicer shares: the master, the checks and the update threads."""

    master: Master
    auth: _Auth
    runner: UpdateRunner
    limits: CallLimits

    async def enter(self, context: Any) -> str:
        """Count this call against its peer's and the overall limit; the peer string."""
        peer = context.peer()
        refused = self.limits.enter(peer)
        if refused:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        return str(peer)

    async def update(self, context: Any, node: str, msg: Any, full: bool) -> Result:
        """``Master.handle_update`` for one message, on an update thread."""
        features = msg.features if msg.HasField("features") else None
        try:
            return await self.runner.run(node, self._handle, node, msg, features, full)
        except InvalidUpdate as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise  # not reached: abort raises

    def _handle(self, node: str, msg: Any, features: Any, full: bool) -> Result:
        digest = message_digest(msg)
        # Our stream's Update says where local labels came from; SetLabels cannot.
        sent = getattr(msg, "local_origins", None)
        local: tuple[origins.Origins, int] | None = None
        if sent is not None and len(sent) > origins.MAX_GIVEN:
            local = ({}, len(sent))  # not even looked at: over any worker's bound
        elif sent is not None and (sent or msg.local_origins_omitted):
            given = {k: list(v.set_by[-origins.MAX_SETTERS :]) for k, v in sent.items()}
            local = origins.bound(given, msg.local_origins_omitted)
        return self.master.handle_update(
            node, msg.labels, features, full=full, digest=digest, local_origins=local
        )


class LabelerServicer(labeler_pb2_grpc.LabelerServicer):
    def __init__(self, serving: _Serving) -> None:
        self.serving = serving

    async def SetLabels(self, request: Any, context: Any) -> Any:  # noqa: N802
        await _check_node_name(context, request.node_name)
        await _check_serving(context, self.serving.master)
        await self.serving.auth.check(context, request.node_name)
        await _check_size(context, request.labels)
        peer = await self.serving.enter(context)
        try:
            await self.serving.update(context, request.node_name, request, full=True)
        finally:
            self.serving.limits.leave(peer)
        return labeler_pb2.SetLabelsReply()


class StreamServicer(nfdstream_pb2_grpc.FeatureStreamServicer):
    def __init__(self, serving: _Serving, first_message_timeout: float) -> None:
        self.serving = serving
        self.master = serving.master
        self.first_message_timeout = first_message_timeout
        self.streams: dict[int, tuple[Any, asyncio.Lock]] = {}

    async def request_resync(self, reason: str) -> None:
        msg = nfdstream_pb2.MasterMessage(resync=nfdstream_pb2.ResyncRequest(reason=reason))
        for context, lock in list(self.streams.values()):
            try:
                async with lock:
                    await context.write(msg)
            except Exception as err:  # noqa: BLE001 - a dead stream is cleaned up by its reader
                log.debug("resync request failed: %s", err)

    async def _first_update(self, context: Any) -> Any:
        """The stream's first Update (keepalives before it are skipped); None at EOF.
        A stream that sends none in time is cut: silent streams cost memory."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_message_timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await context.read()
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no update within {self.first_message_timeout:g} s of opening the stream",
                )
            if msg is grpc.aio.EOF:
                return None
            if msg.WhichOneof("msg") == "update":
                return msg.update

    async def Connect(self, request_iterator: Any, context: Any) -> None:  # noqa: N802
        peer = await self.serving.enter(context)
        try:
            await self._serve_stream(context)
        finally:
            self.serving.limits.leave(peer)

    async def _serve_stream(self, context: Any) -> None:
        up = await self._first_update(context)
        if up is None:
            return
        node = up.node_name
        await _check_node_name(context, node)
        await _check_serving(context, self.master)
        await self.serving.auth.check(context, node)
        lock = asyncio.Lock()
        self.master.stream_opened(node)
        self.streams[id(context)] = (context, lock)
        log.info("worker for node %s connected from %s", node, context.peer())
        try:
            while True:
                if up.node_name != node:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"stream is bound to node {node!r}, got an update for {up.node_name!r}",
                    )
                await _check_size(context, up.labels)
                result = await self.serving.update(context, node, up, full=up.full)
                ack = nfdstream_pb2.Ack(seq=up.seq, unchanged=result.unchanged)
                if not result.unchanged:
                    ack.labels.update(result.labels)
                    ack.rejected.extend(_rejections(result))
                reply = nfdstream_pb2.MasterMessage(ack=ack)
                # Drop the parsed messages before waiting for the next one: an idle stream
                # must not pin a request's protobuf arena (tens of KiB per node at scale).
                del up, result, ack
                async with lock:
                    await context.write(reply)
                del reply
                up = await self._next_update(context)
                if up is None:
                    return
        finally:
            self.streams.pop(id(context), None)
            self.master.stream_closed(node)
            log.info("worker for node %s disconnected", node)

    @staticmethod
    async def _next_update(context: Any) -> Any:
        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return None
            if msg.WhichOneof("msg") == "update":
                return msg.update  # keepalives only keep the stream open


class HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1: NOT_SERVING while stopping, or while updates cannot progress."""

    def __init__(self, problem: Callable[[], str | None] = lambda: None) -> None:
        self.serving = True
        self.problem = problem

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802
        ok = self.serving and self.problem() is None
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ok
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


# Connection hygiene, all grpc core channel arguments. A connection must finish its
# TLS/HTTP/2 handshake (the client's SETTINGS frame included) in 10 s; one without any
# call for 2 min is closed (an upstream unary worker calls every minute); the server
# pings every 60 s to find dead peers; a client pinging more often than every 5 s is
# sent away after 2 strikes; one connection carries at most 16 calls at a time.
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.server_handshake_timeout_ms", 10_000),
    ("grpc.max_connection_idle_ms", 120_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_concurrent_streams", 16),
)
# Heap pages freed by closed connections go back to the kernel this often.
MEMORY_RELEASE_INTERVAL_S = 20.0


def _connection_cap() -> int:
    """Connections grpc accepts before refusing new ones: below the descriptor limit,
    with room for the API client, watches and the HTTP probes."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(64, soft - 512)


class GrpcServer:
    def __init__(
        self,
        master: Master,
        port: int,
        *,
        tls: TLSFiles | None = None,
        verify_node_name: bool = False,
        host: str = "[::]",
        limits: CallLimits | None = None,
        first_message_timeout: float = FIRST_MESSAGE_TIMEOUT_S,
        stuck_after: float = STUCK_AFTER_S,
        update_threads: int = UPDATE_THREADS,
    ) -> None:
        if verify_node_name and tls is None:
            raise ValueError("--verify-node-name needs --ca-file, --cert-file and --key-file")
        self.master = master
        self.stuck_after = stuck_after
        options = [
            *SERVER_OPTIONS,
            ("grpc.max_allowed_incoming_connections", _connection_cap()),
        ]
        self.server = grpc.aio.server(options=options)
        self.runner = UpdateRunner(update_threads)
        self.heartbeat = LoopHeartbeat()
        self.limits = limits or CallLimits()
        self._tasks: list[asyncio.Task[None]] = []
        serving = _Serving(master, _Auth(verify_node_name), self.runner, self.limits)
        self.stream = StreamServicer(serving, first_message_timeout)
        self.health = HealthServicer(self.update_problem)
        # As the generated add_LabelerServicer_to_server, with a deserializer that also
        # accepts the v0.10/v0.11 features field.
        labeler = grpc.method_handlers_generic_handler(
            "labeler.Labeler",
            {
                "SetLabels": grpc.unary_unary_rpc_method_handler(
                    LabelerServicer(serving).SetLabels,
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

    def update_problem(self) -> str | None:
        """Why updates cannot progress (every update thread stuck), or None."""
        stuck = self.runner.stuck_for()
        if stuck > self.stuck_after:
            return f"all {self.runner.threads} update threads busy for {stuck:.0f} s"
        return None

    def health_problem(self) -> str | None:
        """Why the server is not healthy, or None; safe to call from any thread
        (/healthz runs on the HTTP thread, which works while this loop is stuck)."""
        silent = self.heartbeat.silent_for()
        if silent > self.stuck_after:
            return f"the gRPC serving loop has not run for {silent:.0f} s"
        return self.update_problem()

    async def start(self) -> None:
        await self.server.start()
        self.heartbeat.last = time.monotonic()
        self._tasks = [
            asyncio.create_task(self.heartbeat.run()),
            asyncio.create_task(self._release_memory()),
        ]

    async def _release_memory(self) -> None:
        while True:
            await asyncio.sleep(MEMORY_RELEASE_INTERVAL_S)
            await in_daemon_thread(release_free_memory, "nfd-malloc-trim")

    async def stop(self, grace: float = 1.0) -> None:
        self.health.serving = False
        for task in self._tasks:
            task.cancel()
        await self.server.stop(grace)
        self.runner.stop()
