"""What keeps one client, or one NodeFeatureRule, from taking the gRPC server down.

- ``UpdateRunner``: ``Master.handle_update`` (rules, policy) runs on a few daemon
  threads instead of the event loop, one update at a time per node in arrival order.
  A rule that never ends then costs one node one thread, not every RPC.
- ``CallLimits``: caps on the calls one remote peer address, and all peers, hold open.
- ``LoopHeartbeat``: a task on the serving loop stamps the time; the HTTP thread reads
  it, so /healthz sees a loop that no longer runs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# Threads for updates: one stuck node holds one; the GIL makes more of no use for speed.
UPDATE_THREADS = 8
# /healthz turns 503 when the serving loop, or every update thread, is this long stuck.
# Liveness probes (10 s period, 3 failures) then restart the master in ~40 s.
STUCK_AFTER_S = 10.0
HEARTBEAT_INTERVAL_S = 1.0
# A worker sends its node's update first thing; a stream silent for this long is cut.
FIRST_MESSAGE_TIMEOUT_S = 10.0
# One node (one pod IP) needs one stream; several leave room for reconnects behind NAT.
MAX_CALLS_PER_PEER = 32
MAX_CALLS = 20_000


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class UpdateRunner:
    """Run blocking calls per node on a fixed set of daemon threads.

    Daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's
    threads at exit, so one stuck rule would keep the process from ever exiting.
    """

    def __init__(self, threads: int = UPDATE_THREADS, name: str = "nfd-update") -> None:
        self.threads = threads
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lanes: dict[str, _Lane] = {}
        self._busy_since: dict[int, float] = {}
        for i in range(threads):
            threading.Thread(target=self._work, args=(i,), name=f"{name}-{i}", daemon=True).start()

    async def run(self, node: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a thread, after every earlier call for ``node`` finished.

        A cancelled caller (deadline, disconnect) does not release the node's lane
        before its call really ends: a later update must not overtake it."""
        lane = self._lanes.setdefault(node, _Lane())
        lane.users += 1
        try:
            await lane.lock.acquire()
        except BaseException:
            self._leave(node, lane)
            raise
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def finished(fut: asyncio.Future[T]) -> None:
            lane.lock.release()
            self._leave(node, lane)
            if not fut.cancelled():
                fut.exception()  # retrieved here too: its caller may have gone away

        done.add_done_callback(finished)
        self._jobs.put((fn, args, loop, done))
        return await asyncio.shield(done)

    def _leave(self, node: str, lane: _Lane) -> None:
        lane.users -= 1
        if lane.users == 0 and self._lanes.get(node) is lane:
            del self._lanes[node]

    def stop(self) -> None:
        for _ in range(self.threads):
            self._jobs.put(None)

    def stuck_for(self) -> float:
        """Seconds since any thread last picked up work, when all are busy; else 0."""
        busy = list(self._busy_since.values())
        if len(busy) < self.threads:
            return 0.0
        return time.monotonic() - max(busy)

    def _work(self, index: int) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, loop, done = job
            self._busy_since[index] = time.monotonic()
            try:
                outcome: tuple[Any, BaseException | None] = (fn(*args), None)
            except BaseException as err:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome = (None, err)
            finally:
                self._busy_since.pop(index, None)
            del job, fn, args
            try:
                loop.call_soon_threadsafe(_settle, done, *outcome)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass
            del done, outcome


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()`` on a new daemon thread: like ``asyncio.to_thread``, but a call that never
    returns (a rule without end) cannot hold the process at exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def call() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (fn(), None)
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = (None, err)
        try:
            loop.call_soon_threadsafe(_settle, done, *outcome)
        except RuntimeError:  # the loop is closed
            pass

    threading.Thread(target=call, name=name, daemon=True).start()
    return await done


def peer_address(peer: str) -> str:
    """The address part of grpc's peer string ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7")."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rpartition(":")[0]
    return peer


def is_local(address: str) -> bool:
    """A loopback or unix-socket peer: inside the master's own network namespace."""
    if address.startswith("unix:"):
        return True
    host = address.partition(":")[2].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class CallLimits:
    """Counts the open calls (streams and unary calls in flight) per peer address.

    Local peers have no cap of their own, only the overall one: behind a service-mesh
    sidecar every worker arrives from loopback, and simulated workers (benchmarks)
    share it too."""

    def __init__(self, per_peer: int = MAX_CALLS_PER_PEER, total: int = MAX_CALLS) -> None:
        self.per_peer, self.total = per_peer, total
        self._open: Counter[str] = Counter()
        self._count = 0

    def enter(self, peer: str) -> str | None:
        """Admit one more call from ``peer``; else the reason it is refused."""
        if self._count >= self.total:
            return f"the master holds its limit of {self.total} open calls"
        address = peer_address(peer)
        if self._open[address] >= self.per_peer and not is_local(address):
            return f"{address} holds its limit of {self.per_peer} open calls"
        self._open[address] += 1
        self._count += 1
        return None

    def leave(self, peer: str) -> None:
        address = peer_address(peer)
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]
        self._count -= 1

    @property
    def open_calls(self) -> int:
        return self._count


class LoopHeartbeat:
    """The time the serving loop last ran a task of ours (monotonic)."""

    def __init__(self, interval: float = HEARTBEAT_INTERVAL_S) -> None:
        self.interval = interval
        self.last = time.monotonic()

    async def run(self) -> None:
        while True:
            self.last = time.monotonic()
            await asyncio.sleep(self.interval)

    def silent_for(self) -> float:
        return max(0.0, time.monotonic() - self.last - self.interval)
