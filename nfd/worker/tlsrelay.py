"""gRPC over the worker's own TLS connection, for masters that negotiate no ALPN.

gRPC's C core (which grpcio wraps) refuses a TLS peer that selected no ALPN protocol
("Cannot check peer: missing selected ALPN property"), and grpcio has no option to turn the
check off. Upstream v0.16's nfd-master is such a peer: it hands its certificates over through
``tls.Config.GetConfigForClient`` with a config that has no ``NextProtos``, so it never
answers the client's ALPN offer (grpc-go before 1.67, as in upstream's own v0.16 worker, did
not check). Go's gRPC server itself needs no ALPN: it reads the HTTP/2 preface.

:func:`negotiates_h2` asks the master once with Python's ``ssl`` module. When it does not
select ``h2``, :class:`TlsRelay` carries the channel instead: grpcio talks plaintext HTTP/2 to
a Unix socket in a private (0700) directory, and each connection accepted there is carried to
the master over TLS made here, with the same CA, client certificate and server name, so the
master still sees (and verifies) an mTLS client. Nothing listens on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import tempfile
import threading
from concurrent.futures import Future

log = logging.getLogger("nfd-worker")

CHUNK = 256 * 1024


def split_target(server: str) -> tuple[str, int] | None:
    """(host, port) of a plain ``host:port`` / ``[v6]:port`` gRPC target; None for targets
    with a scheme (``dns:///``, ``unix:``) or without a port, which are left to grpcio."""
    if "/" in server or server.startswith("unix:"):
        return None
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None
    return host, int(port)


def client_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """Verify the master against ``ca_file``, present ``cert_file``/``key_file``, offer h2."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.load_cert_chain(cert_file, key_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return ctx


def negotiates_h2(
    host: str, port: int, ctx: ssl.SSLContext, server_name: str, timeout: float = 5.0
) -> bool | None:
    """True if the master selects ALPN ``h2``, False if it selects none, None if the probe
    could not complete (then grpcio's own TLS reports the error)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
                return tls.selected_alpn_protocol() == "h2"
    except (OSError, ssl.SSLError) as err:
        log.debug("TLS probe of %s:%d failed: %s", host, port, err)
        return None


class TlsRelay:
    """A Unix socket whose connections are carried to ``host:port`` over TLS (one event loop
    in a daemon thread). ``target`` is what grpcio dials; :meth:`close` removes it all."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext, server_name: str) -> None:
        self.host, self.port, self.server_name = host, port, server_name
        self._ctx = ctx
        self._dir = tempfile.mkdtemp(prefix="nfd-worker-tls-")  # mode 0700
        self.path = os.path.join(self._dir, "master.sock")
        self.target = f"unix:{self.path}"
        self.last_error: str | None = None
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.name = "nfd-tls-relay"
        self._thread.start()
        started: Future[asyncio.AbstractServer] = asyncio.run_coroutine_threadsafe(
            asyncio.start_unix_server(self._handle, path=self.path), self._loop
        )
        try:
            self._server = started.result(timeout=10)
        except BaseException:
            self.close()
            raise

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        self.host, self.port, ssl=self._ctx, server_hostname=self.server_name
                    ),
                    timeout=20,
                )
            except (TimeoutError, OSError, ssl.SSLError) as err:
                self._failed(err)
                return
            # The master refusing our certificate shows in these reads (TLS 1.3 sends its
            # alert after the client's side of the handshake is done); _pump records it before
            # it closes grpcio's side, so the failed RPC can report it.
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            _close(up_writer)
        except asyncio.CancelledError:
            pass  # close(): the relay is going away
        finally:
            _close(writer)
            if task is not None:
                self._tasks.discard(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
        except (OSError, ssl.SSLError) as err:
            self._failed(err)
        finally:
            if dst.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    dst.write_eof()
            else:
                _close(dst)

    def _failed(self, err: BaseException) -> None:
        """Keep the error for the worker's message; log it once, not once per connection."""
        message = f"relay to {self.host}:{self.port}: {err or type(err).__name__}"
        if message != self.last_error:
            log.warning("master %s:%d: %s", self.host, self.port, message)
        self.last_error = message

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()
