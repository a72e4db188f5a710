"""The small HTTP endpoint both daemons serve on ``--metrics``: /metrics, /healthz, /readyz,
and any extra routes the daemon adds (the master's /explain/<node>)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# A route answers (status, content type, body) for the path after its prefix and the
# query parameters.
Route = Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]


def serve_http(
    port: int,
    registry: CollectorRegistry,
    ready: Callable[[], bool] | None = None,
    host: str = "",
    health: Callable[[], str | None] | None = None,
    poll_interval: float = 0.5,
    thread_name: str = "nfd-http",
    routes: Mapping[str, Route] | None = None,
) -> ThreadingHTTPServer:
    """Serve in a daemon thread; OSError if the port is taken.

    Without ``ready`` there is no /readyz. ``health`` says why the daemon is unhealthy
    (None: healthy); /healthz then answers 503 with the reason, so a liveness probe
    restarts it. ``poll_interval`` bounds how long
    ``shutdown()`` waits; an idle worker that never calls it uses a long one
    so the thread sleeps until a request comes. ``routes`` maps a path prefix
    ("/explain/") to its handler; an exception there answers 500 with its message.
    """
    extra = dict(routes or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            path, _, query = self.path.partition("?")
            prefix = next((p for p in extra if path.startswith(p)), None)
            if prefix is not None:
                try:
                    code, ctype, body = extra[prefix](path[len(prefix) :], parse_qs(query))
                except Exception as err:  # noqa: BLE001 - one bad request costs only itself
                    log.exception("http: %s", path)
                    code, ctype, body = 500, "text/plain", f"internal error: {err}\n".encode()
            elif path == "/metrics":
                body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
            elif path == "/healthz":
                problem = health() if health is not None else None
                if problem is None:
                    body, ctype, code = b"ok\n", "text/plain", 200
                else:
                    body, ctype, code = f"unhealthy: {problem}\n".encode(), "text/plain", 503
            elif path == "/readyz" and ready is not None:
                ok = ready()
                body, ctype, code = (
                    (b"ok\n" if ok else b"not ready\n"),
                    "text/plain",
                    (200 if ok else 503),
                )
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": poll_interval},
        name=thread_name,
        daemon=True,
    ).start()
    return server
