"""The worker's gRPC client: publishes labels and raw features to nfd-master.

``Publisher.start()`` runs one long-lived FeatureStream in a background thread:
a full snapshot after every (re)connect, then an update only when something
changed and a keepalive otherwise; it reconnects forever with exponential
backoff and jitter (capped at 30 s) and answers the master's resync requests.
Against a master without the stream (upstream v0.6–v0.16: UNIMPLEMENTED) it falls
back to the unary ``labeler.Labeler/SetLabels``. TLS files are re-read on every
reconnect, and a change of their mtime forces a reconnect.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grpc

from nfd import __version__, origins
from nfd._proto import labeler_pb2, labeler_pb2_grpc, nfdstream_pb2, nfdstream_pb2_grpc
from nfd.features import Features
from nfd.wire import MAX_MESSAGE_BYTES, features_to_proto
from nfd.worker import tlsrelay

log = logging.getLogger("nfd-worker")

MAX_BACKOFF = 30.0
KEEPALIVE = 30.0
UNARY_RESEND = 60.0  # upstream masters expect a SetLabels every cycle


class PublishError(RuntimeError):
    """Publishing failed; the message says to which server and why."""


class _Fallback(Exception):
    """The master does not implement FeatureStream."""


class Publisher:
    def __init__(
        self,
        server: str,
        node_name: str,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_name_override: str | None = None,
        *,
        keepalive: float = KEEPALIVE,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        tls = [ca_file, cert_file, key_file]
        if any(tls) and not all(tls):
            raise PublishError("--ca-file, --cert-file and --key-file must be given together")
        if not node_name:
            raise PublishError("node name is empty (set NODE_NAME)")
        self.server, self.node_name = server, node_name
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.server_name_override = server_name_override
        self.keepalive, self.max_backoff = keepalive, max_backoff
        self._lock = threading.Lock()
        self._labels: dict[str, str] | None = None
        self._features: Any = None
        self._origins: tuple[origins.Origins, int] = ({}, 0)
        self._digest = b""
        self._version = 0  # bumps on every changed update()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._call: Any = None
        self.connected = threading.Event()
        self.last_ack: Any = None
        self.mode = ""  # "stream" or "unary" once connected
        self._relay_logged = False
        self._relay: tlsrelay.TlsRelay | None = None  # the latest, for its last error

    # -- public API ------------------------------------------------------------------

    def update(self, labels: Mapping[str, str], features: Features) -> None:
        """New state; sent by the background thread only if it differs."""
        proto = features_to_proto(features)
        local = _local_origins(labels, features)
        digest = _digest(labels, proto, local)
        with self._lock:
            if digest == self._digest:
                return
            self._labels, self._features, self._digest = dict(labels), proto, digest
            self._origins = local
            self._version += 1
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nfd-publish", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def publish_once(
        self, labels: Mapping[str, str], features: Features, timeout: float = 10.0
    ) -> None:
        """Send one full snapshot and wait for the master's acknowledgement."""
        proto = features_to_proto(features)
        try:
            with self._channel() as channel:
                update = self._update_msg(1, labels, proto, _local_origins(labels, features))
                try:
                    stub = nfdstream_pb2_grpc.FeatureStreamStub(channel)
                    msgs = iter([nfdstream_pb2.WorkerMessage(update=update)])
                    for reply in stub.Connect(_then_block(msgs, timeout), timeout=timeout):
                        if reply.WhichOneof("msg") == "ack":
                            self.last_ack = reply.ack
                            _log_rejections(reply.ack)
                            return
                    raise PublishError(f"master {self.server} closed the stream without an ack")
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                labeler_pb2_grpc.LabelerStub(channel).SetLabels(
                    self._unary_msg(labels, proto), timeout=timeout
                )
        except grpc.RpcError as err:
            why = f"{err.code().name}: {err.details()}"
            relay_error = self._relay.last_error if self._relay is not None else None
            if relay_error:
                why += f" ({relay_error})"
            raise PublishError(f"cannot publish to master {self.server}: {why}") from None
        except OSError as err:
            raise PublishError(f"cannot read TLS files: {err}") from None

    # -- internals -------------------------------------------------------------------

    def _tls_stamp(self) -> tuple[int, ...]:
        out = []
        for p in (self.ca_file, self.cert_file, self.key_file):
            try:
                out.append(os.stat(p).st_mtime_ns if p else 0)
            except OSError:
                out.append(-1)
        return tuple(out)

    def _channel(self) -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", int(self.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", 10000),
            ("grpc.enable_retries", 0),
        ]
        if not self.ca_file:
            return grpc.insecure_channel(self.server, options=options)
        relayed = self._relayed_channel(options)
        if relayed is not None:
            return relayed
        if self.server_name_override:
            options.append(("grpc.ssl_target_name_override", self.server_name_override))
        with open(self.ca_file, "rb") as ca, open(self.key_file or "", "rb") as key:
            with open(self.cert_file or "", "rb") as cert:
                creds = grpc.ssl_channel_credentials(ca.read(), key.read(), cert.read())
        return grpc.secure_channel(self.server, creds, options=options)

    def _relayed_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel | None:
        """A channel through :class:`TlsRelay` when the master answers TLS without selecting
        ALPN ``h2`` (upstream v0.16), which grpcio's own TLS refuses; None otherwise."""
        target = tlsrelay.split_target(self.server)
        if target is None or not (self.ca_file and self.cert_file and self.key_file):
            return None
        host, port = target
        name = self.server_name_override or host
        try:
            ctx = tlsrelay.client_context(self.ca_file, self.cert_file, self.key_file)
        except ssl.SSLError:
            return None  # grpcio reports the bad files in its own words
        if tlsrelay.negotiates_h2(host, port, ctx, name) is not False:
            return None
        if not self._relay_logged:
            log.info(
                "master %s selects no ALPN protocol (upstream v0.16 does not); carrying gRPC "
                "over the worker's own mTLS connection (Python ssl), as grpcio refuses it",
                self.server,
            )
            self._relay_logged = True
        relay = self._relay = tlsrelay.TlsRelay(host, port, ctx, name)
        options = [*options, ("grpc.default_authority", name)]
        return _RelayChannel(grpc.insecure_channel(relay.target, options=options), relay)

    def _update_msg(
        self,
        seq: int,
        labels: Mapping[str, str],
        features: Any,
        local: tuple[origins.Origins, int] = ({}, 0),
    ) -> Any:
        msg = nfdstream_pb2.Update(
            seq=seq, node_name=self.node_name, nfd_version=__version__, full=True
        )
        msg.labels.update(labels)
        if features is not None:
            msg.features.CopyFrom(features)
        for key, setters in local[0].items():
            msg.local_origins[key].set_by.extend(setters)
        msg.local_origins_omitted = local[1]
        return msg

    def _unary_msg(self, labels: Mapping[str, str], features: Any) -> Any:
        msg = labeler_pb2.SetLabelsRequest(nfd_version=__version__, node_name=self.node_name)
        msg.labels.update(labels)
        if features is not None:
            msg.features.CopyFrom(features)
        return msg

    def _snapshot(self) -> tuple[int, dict[str, str] | None, Any]:
        with self._lock:
            return self._version, self._labels, self._features

    def _snapshot_origins(self) -> tuple[origins.Origins, int]:
        with self._lock:
            return self._origins

    def _run(self) -> None:
        failures = 0
        unary = False
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                if unary:
                    self._unary_session()
                else:
                    self._stream_session()
            except _Fallback:
                log.info("master %s has no FeatureStream; using Labeler.SetLabels", self.server)
                unary = True
                continue
            except grpc.RpcError as err:
                log.warning(
                    "connection to master %s: %s: %s", self.server, err.code().name, err.details()
                )
            except Exception as err:  # noqa: BLE001 - never exit: retry with backoff
                log.warning("connection to master %s: %s", self.server, err)
            finally:
                self.connected.clear()
                self._call = None
            if self._stop.is_set():
                return
            # A session that lasted a while resets the backoff.
            failures = 0 if time.monotonic() - began > 60 else failures + 1
            delay = min(self.max_backoff, 0.5 * 2 ** min(failures, 10))
            delay *= random.uniform(0.5, 1.0)  # jitter: workers do not reconnect in lockstep
            log.info("reconnecting to %s in %.1fs", self.server, delay)
            self._stop.wait(delay)

    def _wait_for_state(self) -> bool:
        while not self._stop.is_set():
            if self._snapshot()[1] is not None:
                return True
            self._wake.wait(1.0)
            self._wake.clear()
        return False

    def _stream_session(self) -> None:
        if not self._wait_for_state():
            return
        stamp = self._tls_stamp()
        outq: queue.Queue[Any] = queue.Queue()
        resync = threading.Event()
        with self._channel() as channel:
            stub = nfdstream_pb2_grpc.FeatureStreamStub(channel)
            call = stub.Connect(_drain(outq))
            self._call = call
            seq = 0
            sent_version = -1
            errors: list[BaseException] = []

            def reader() -> None:
                try:
                    for reply in call:
                        kind = reply.WhichOneof("msg")
                        if kind == "ack":
                            self.last_ack = reply.ack
                            self.connected.set()
                            _log_rejections(reply.ack)
                        elif kind == "resync":
                            log.info("master asks for a resync: %s", reply.resync.reason)
                            resync.set()
                            self._wake.set()
                except grpc.RpcError as err:
                    errors.append(err)
                finally:
                    self._wake.set()

            t = threading.Thread(target=reader, name="nfd-publish-reader", daemon=True)
            t.start()
            self.mode = "stream"
            last_send = 0.0
            try:
                while not self._stop.is_set() and t.is_alive():
                    version, labels, features = self._snapshot()
                    if version != sent_version or resync.is_set():
                        resync.clear()
                        seq += 1
                        local = self._snapshot_origins()
                        outq.put(
                            nfdstream_pb2.WorkerMessage(
                                update=self._update_msg(seq, labels or {}, features, local)
                            )
                        )
                        sent_version, last_send = version, time.monotonic()
                    elif time.monotonic() - last_send >= self.keepalive:
                        outq.put(nfdstream_pb2.WorkerMessage(keepalive=nfdstream_pb2.Keepalive()))
                        last_send = time.monotonic()
                    if self._tls_stamp() != stamp:
                        log.info("TLS files changed: reconnecting")
                        break
                    self._wake.wait(min(self.keepalive, 5.0))
                    self._wake.clear()
            finally:
                outq.put(None)
                call.cancel()
                t.join(timeout=5)
            if errors:
                err = errors[0]
                if isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.UNIMPLEMENTED:
                    raise _Fallback()
                if not self._stop.is_set() and not (
                    isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.CANCELLED
                ):
                    raise err

    def _unary_session(self) -> None:
        if not self._wait_for_state():
            return
        stamp = self._tls_stamp()
        with self._channel() as channel:
            stub = labeler_pb2_grpc.LabelerStub(channel)
            sent_version, last_send = -1, 0.0
            self.mode = "unary"
            while not self._stop.is_set():
                version, labels, features = self._snapshot()
                if version != sent_version or time.monotonic() - last_send >= UNARY_RESEND:
                    stub.SetLabels(self._unary_msg(labels or {}, features), timeout=10)
                    self.connected.set()
                    sent_version, last_send = version, time.monotonic()
                if self._tls_stamp() != stamp:
                    return
                self._wake.wait(5.0)
                self._wake.clear()


class _RelayChannel(grpc.Channel):
    """A grpcio channel to a :class:`TlsRelay`; closing it closes the relay too."""

    def __init__(self, inner: grpc.Channel, relay: tlsrelay.TlsRelay) -> None:
        self._inner, self.relay = inner, relay

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._inner.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._inner.unsubscribe(callback)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_unary(method, *args, **kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_stream(method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_stream(method, *args, **kwargs)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self.relay.close()

    def __enter__(self) -> _RelayChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(q: queue.Queue[Any]) -> Iterator[Any]:
    while True:
        item = q.get()
        if item is None:
            return
        yield item


def _then_block(msgs: Iterator[Any], timeout: float) -> Iterator[Any]:
    """Send ``msgs`` then keep the request side open until the call ends (the
    master's ack arrives first)."""
    yield from msgs
    time.sleep(timeout)


def _digest(
    labels: Mapping[str, str], features: Any, local: tuple[origins.Origins, int] = ({}, 0)
) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for k, v in sorted(labels.items()):
        h.update(f"{k}\0{v}\1".encode())
    h.update(features.SerializeToString(deterministic=True))
    if local[0] or local[1]:
        h.update(origins.encode(*local).encode())
    return h.digest()


def _local_origins(labels: Mapping[str, str], features: Features) -> tuple[origins.Origins, int]:
    """Where the local labels among ``labels`` came from (Features.origins), bounded."""
    return origins.published(labels, features.origins, features.attributes.get("local.label"))


def _log_rejections(ack: Any) -> None:
    for r in ack.rejected:
        log.warning("master rejected %s %s: %s", r.kind, r.name, r.reason)
