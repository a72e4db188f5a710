"""Fault-injection helpers on top of the shared harnesses.

- ``restart_component``: stop etcd or kube-apiserver of a ControlPlane and start it
  again with the same arguments (same ports, same data directory).
- ``NodeWatch``: a list+watch on the test's Node objects that keeps every label set it
  sees, resumes after apiserver/etcd restarts, and counts flaps (a label that had to stay
  missing from a Node even once).
- ``LatencyProxy``: an asyncio HTTP proxy on loopback in front of the apiserver that
  delays requests, more for chosen nodes' paths, so one node can be made slow.
- ``Fleet``: N in-process ``Publisher``s (the worker's real publishing code) talking
  to a real nfd-master over gRPC.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from nfd.features import Features
from nfd.worker.publish import Publisher
from tests.kube.controlplane import ControlPlane, _http_ok, free_port, wait_until

FNK = "feature.node.kubernetes.io"
RUN_LABEL = "reliability.nfd.test/run"

# --------------------------------------------------------------------------- control plane


def _flag(argv: Iterable[str], name: str) -> str:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    raise KeyError(name)


def stop_component(plane: ControlPlane, name: str, sig: int = signal.SIGTERM) -> list[str]:
    """Stop ``name`` (etcd or kube-apiserver); return its argv for ``start_component``."""
    component = plane._components[name]
    argv = [str(a) for a in component.process.args]
    if sig == signal.SIGKILL:
        component.process.kill()
        component.process.wait(10)
    else:
        component.stop()
    return argv


def start_component(plane: ControlPlane, name: str, argv: list[str], timeout: float = 90) -> float:
    """Start ``name`` again and wait until it is ready; return the time it became ready."""
    plane._spawn(name, argv)
    if name == "etcd":
        url = _flag(argv, "listen-client-urls")
        check: Callable[[], bool] = lambda: _http_ok(f"{url}/health")  # noqa: E731
    else:
        check = lambda: _http_ok(f"{plane.server}/readyz", plane.token)  # noqa: E731
    wait_until(lambda: plane._check_alive(name) and check(), timeout, f"{name} ready", 0.2)
    return time.monotonic()


def restart_component(plane: ControlPlane, name: str, down_s: float) -> float:
    argv = stop_component(plane, name)
    time.sleep(down_s)
    return start_component(plane, name, argv)


# --------------------------------------------------------------------------- node watch


@dataclass
class Seen:
    at: float
    kind: str
    labels: dict[str, str]


class NodeWatch:
    """Every label set of the Nodes labelled ``RUN_LABEL=<run>``, as the apiserver sends
    them; a separate thread, resilient to apiserver and etcd restarts."""

    def __init__(self, plane: ControlPlane, run: str) -> None:
        from kubernetes import client, config

        # An own client: the plane's shared one may be mid-request in the test thread.
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.selector = f"{RUN_LABEL}={run}"
        self.seen: dict[str, list[Seen]] = {}
        self.gaps = 0  # relists after the watch could not resume (events may be missed)
        self.errors: list[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
        self._thread.start()

    def _add(self, name: str, kind: str, labels: Mapping[str, str]) -> None:
        with self._cond:
            self.seen.setdefault(name, []).append(Seen(time.monotonic(), kind, dict(labels)))
            self._cond.notify_all()

    def _run(self) -> None:
        from kubernetes import watch

        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    body = self.core.list_node(label_selector=self.selector)
                    for node in body.items:
                        self._add(node.metadata.name, "LIST", node.metadata.labels or {})
                    rv = body.metadata.resource_version
                w = watch.Watch()
                for event in w.stream(
                    self.core.list_node,
                    label_selector=self.selector,
                    resource_version=rv,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {obj}")
                    rv = obj.metadata.resource_version
                    labels = obj.metadata.labels or {}
                    if event["type"] == "DELETED":
                        labels = {}
                    self._add(obj.metadata.name, event["type"], labels)
                    if self._stop.is_set():
                        return
            except Exception as err:  # noqa: BLE001 - apiserver/etcd down: resume or relist
                text = str(err)
                self.errors.append(text[:200])
                if "410" in text or "too old" in text or "Expired" in text:
                    rv = ""
                    self.gaps += 1
                self._stop.wait(0.3)

    def wait_seen(self, names: Iterable[str], timeout: float = 30) -> None:
        names = set(names)
        wait_until(lambda: names <= set(self.seen), timeout, f"the watch to see {names}")

    def latest(self, name: str) -> dict[str, str]:
        with self._cond:
            events = self.seen.get(name) or []
            return dict(events[-1].labels) if events else {}

    def wait_all(
        self,
        names: Iterable[str],
        pred: Callable[[str, dict[str, str]], bool],
        timeout: float,
        what: str,
    ) -> dict[str, float]:
        """Wait until every node's latest label set satisfies ``pred``; return, per node,
        when the first event of its final satisfying run arrived."""
        names = list(names)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                done: dict[str, float] = {}
                for name in names:
                    events = self.seen.get(name) or []
                    if not events or not pred(name, events[-1].labels):
                        break
                    at = events[-1].at
                    for ev in reversed(events):
                        if not pred(name, ev.labels):
                            break
                        at = ev.at
                    done[name] = at
                else:
                    return done
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    bad = {n: self.latest(n) for n in names if n not in done}
                    raise AssertionError(f"{what}: not converged in {timeout}s: {bad}")
                self._cond.wait(min(remaining, 0.5))

    def flaps(self, must_stay: Mapping[str, Mapping[str, str | None]], since: float) -> list[str]:
        """Transient removals: each time a label of ``must_stay[node]`` (name -> required
        value, or None for any value) is missing or wrong in an event after ``since``."""
        out = []
        with self._cond:
            for node, wanted in must_stay.items():
                ok = True
                for ev in self.seen.get(node) or []:
                    if ev.at < since:
                        continue
                    missing = [
                        k
                        for k, v in wanted.items()
                        if k not in ev.labels or (v is not None and ev.labels[k] != v)
                    ]
                    if missing and ok:
                        out.append(f"{node}: {missing} gone at +{ev.at - since:.2f}s ({ev.kind})")
                    ok = not missing
        return out

    def events(self, since: float = 0.0) -> int:
        with self._cond:
            return sum(1 for evs in self.seen.values() for ev in evs if ev.at >= since)

    def stop(self) -> None:
        self._stop.set()


def register_nodes(plane: ControlPlane, prefix: str, count: int, run: str) -> list[str]:
    names = [f"{prefix}-{i:02d}" for i in range(count)]
    for name in names:
        plane.register_node(name, labels={RUN_LABEL: run})
    return names


def delete_nodes(plane: ControlPlane, names: Iterable[str]) -> None:
    for name in names:
        try:
            plane.delete_node(name, wait=False)
        except Exception:  # noqa: BLE001 - cleanup after a fault may meet a dead apiserver
            pass


# --------------------------------------------------------------------------- workers


@dataclass
class Fleet:
    """In-process publishers, one per node; each publishes ``labels_for(node, gen)``."""

    server: str
    nodes: list[str]
    labels_for: Callable[[str, int], dict[str, str]]
    publishers: dict[str, Publisher] = field(default_factory=dict)
    gen: dict[str, int] = field(default_factory=dict)
    tls: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    servers: Mapping[str, str] = field(default_factory=dict)  # per-node server, if any

    def start(self) -> None:
        for node in self.nodes:
            server = self.servers.get(node, self.server)
            pub = Publisher(server, node, **dict(self.tls.get(node, {})))
            self.publishers[node] = pub
            self.gen[node] = 0
            pub.update(self.labels_for(node, 0), Features())
            pub.start()

    def bump(self, nodes: Iterable[str] | None = None) -> None:
        for node in nodes if nodes is not None else self.nodes:
            self.gen[node] += 1
            self.publishers[node].update(self.labels_for(node, self.gen[node]), Features())

    def expected(self, node: str) -> dict[str, str]:
        return self.labels_for(node, self.gen[node])

    def close(self) -> None:
        threads = [threading.Thread(target=p.close, daemon=True) for p in self.publishers.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)


class Churn:
    """Bumps some nodes' generation every ``period`` seconds in a thread (updates flow)."""

    def __init__(self, fleet: Fleet, nodes: list[str], period: float) -> None:
        self.fleet, self.nodes, self.period = fleet, nodes, period
        self.bumps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.fleet.bump(self.nodes)
            self.bumps += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --------------------------------------------------------------------------- slow API


class LatencyProxy:
    """Plain-HTTP listener on 127.0.0.1 forwarding to the apiserver over TLS.

    Every request is delayed by ``base_delay``; a request whose path names a node in
    ``slow`` (``/nodes/<name>``) is delayed by that node's delay instead. Requests are
    framed by Content-Length (the Kubernetes Python client sends no chunked requests);
    responses, watches included, are streamed back unchanged.
    """

    def __init__(self, upstream: str, base_delay: float = 0.0) -> None:
        url = urlparse(upstream)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.base_delay = base_delay
        self.slow: dict[str, float] = {}  # node name -> delay of its /nodes/<name> requests
        self.slow_paths: dict[str, float] = {}  # path substring -> delay
        self.requests = 0
        self.delayed: dict[str, int] = {}
        self.listen_port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="latency-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("latency proxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def _delay_for(self, path: str) -> tuple[float, str]:
        for node, delay in self.slow.items():
            if f"/nodes/{node}" in path:
                return delay, node
        for part, delay in self.slow_paths.items():
            if part in path:
                return delay, part
        return self.base_delay, ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            up_r, up_w = await asyncio.open_connection(
                self.host, self.port, ssl=ctx, server_hostname="localhost"
            )
        except OSError:
            writer.close()
            return

        async def pipe_back() -> None:
            try:
                while data := await up_r.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                writer.close()

        back = asyncio.create_task(pipe_back())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if " " in lines[0] else ""
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                delay, node = self._delay_for(path)
                self.requests += 1
                if node:
                    self.delayed[node] = self.delayed.get(node, 0) + 1
                if delay:
                    await asyncio.sleep(delay)
                up_w.write(head + body)
                await up_w.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ValueError):
            pass
        finally:
            up_w.close()
            await asyncio.gather(back, return_exceptions=True)

    def kubeconfig(self, plane: ControlPlane, directory: Path) -> Path:
        """A kubeconfig pointing at this proxy, with the plane's admin token."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {"token": plane.token}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "admin"}}],
            "current-context": "proxy",
        }
        path = directory / "kubeconfig-proxy"
        path.write_text(json.dumps(cfg))
        return path

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# --------------------------------------------------------------------------- service


class ServiceProxy:
    """A Kubernetes Service in front of several nfd-master replicas, on loopback: each new
    TCP connection goes to the next replica (round robin) among those whose /readyz
    answers 200, as kube-proxy does with the Service's ready endpoints."""

    def __init__(self, backends: list[tuple[int, int]], listeners: int = 1) -> None:
        self.backends = backends  # (grpc port, metrics port)
        self.routed: dict[int, int] = {}
        self._next = 0
        # Several listening ports: gRPC shares one connection among the channels of one
        # process that have the same target, and each real worker is its own process.
        self.listen_ports = [free_port() for _ in range(listeners)]
        self.listen_port = self.listen_ports[0]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="service-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("service proxy did not start")

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.listen_ports]

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._servers = [
                await asyncio.start_server(self._handle, "127.0.0.1", port)
                for port in self.listen_ports
            ]

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def _ready_backends(self) -> list[int]:
        import urllib.request

        ready = []
        for grpc_port, metrics_port in self.backends:
            try:
                url = f"http://127.0.0.1:{metrics_port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        ready.append(grpc_port)
            except OSError:
                pass
        return ready

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ready = await asyncio.get_running_loop().run_in_executor(None, self._ready_backends)
        if not ready:
            writer.close()
            return
        port = ready[self._next % len(ready)]
        self._next += 1
        self.routed[port] = self.routed.get(port, 0) + 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
