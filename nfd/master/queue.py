"""A per-node work queue: coalescing, bounded parallelism, retries with backoff.

Many updates for one node become one call of ``apply`` with the newest item; one
node is never processed by two threads at once; a failing node is retried with
exponential backoff without blocking the others.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from nfd.labels import node_name_error

log = logging.getLogger(__name__)

T = TypeVar("T")


class Permanent(Exception):
    """Raised by ``apply`` for errors a retry cannot fix (a 4xx other than conflict
    and throttling): logged once, counted, and the item dropped."""


class NodeGone(Permanent):
    """The Node does not exist (404): besides dropping the item, the owner of the
    queue forgets what it holds for the node."""


class NodeQueue(Generic[T]):
    def __init__(
        self,
        apply: Callable[[str, T], object],
        parallelism: int = 10,
        *,
        base_delay: float = 0.05,
        max_delay: float = 30.0,
        on_failure: Callable[[str, BaseException], None] | None = None,
        on_permanent: Callable[[str, Permanent], None] | None = None,
        merge: Callable[[T, T], T] | None = None,
    ) -> None:
        if parallelism <= 0:
            raise ValueError("--nfd-api-parallelism must be > 0")
        self._apply = apply
        self._merge = merge
        self._on_failure = on_failure
        self._on_permanent = on_permanent
        self._base, self._max = base_delay, max_delay
        self._cond = threading.Condition()
        self._items: dict[str, T] = {}  # newest pending item per node
        self._ready: deque[str] = deque()
        self._queued: set[str] = set()  # in _ready or in _delayed
        self._delayed: list[tuple[float, str]] = []
        self._busy: set[str] = set()
        self._failures: dict[str, int] = {}
        self._paused = False
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._run, name=f"nfd-updater-{i}", daemon=True)
            for i in range(parallelism)
        ]
        for t in self._threads:
            t.start()

    # -- producer side ---------------------------------------------------------

    def put(self, node: str, item: T) -> None:
        # Names reach API paths: one that is not a Node name never enters the queue.
        why = node_name_error(node)
        if why is not None:
            raise ValueError(why)
        with self._cond:
            old = self._items.get(node)
            if old is not None and self._merge is not None:
                item = self._merge(old, item)
            self._items[node] = item
            self._failures.pop(node, None)
            if node not in self._queued and node not in self._busy:
                self._queued.add(node)
                self._ready.append(node)
            elif node in self._queued:
                # A node waiting for a retry with a new item goes again at once.
                if any(n == node for _, n in self._delayed):
                    self._delayed = [(t, n) for t, n in self._delayed if n != node]
                    heapq.heapify(self._delayed)
                    self._ready.append(node)
            self._cond.notify()

    def discard(self, node: str) -> None:
        """Forget the pending item of a node that went away (its work is moot)."""
        with self._cond:
            self._items.pop(node, None)
            self._failures.pop(node, None)

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._items) + len(self._busy)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.01)
        return False

    # -- worker side -----------------------------------------------------------

    def _take(self) -> tuple[str, T] | None:
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, node = heapq.heappop(self._delayed)
                    self._ready.append(node)
                if self._ready and not self._paused:
                    node = self._ready.popleft()
                    self._queued.discard(node)
                    if node not in self._items:
                        continue  # discarded while it waited
                    self._busy.add(node)
                    return node, self._items.pop(node)
                timeout = None
                if self._delayed:
                    timeout = max(0.0, self._delayed[0][0] - now)
                self._cond.wait(timeout)

    def _run(self) -> None:
        while True:
            got = self._take()
            if got is None:
                return
            node, item = got
            retry = False
            try:
                self._apply(node, item)
            except Permanent as err:
                log.warning("node %s: %s (update dropped, not retried)", node, err)
                if self._on_failure:
                    self._on_failure(node, err)
                if self._on_permanent:
                    self._on_permanent(node, err)
            except Exception as err:  # noqa: BLE001 - any API error is retried
                retry = True
                if self._on_failure:
                    self._on_failure(node, err)
                log.warning("node %s: update failed, will retry: %s", node, err)
            with self._cond:
                self._busy.discard(node)
                if retry and node not in self._items:
                    self._items[node] = item
                    n = self._failures.get(node, 0) + 1
                    self._failures[node] = n
                    delay = min(self._max, self._base * (2 ** min(n, 20)))
                    self._queued.add(node)
                    heapq.heappush(self._delayed, (time.monotonic() + delay, node))
                elif retry or node in self._items:
                    # A newer item arrived meanwhile: process it now.
                    if node not in self._queued:
                        self._queued.add(node)
                        self._ready.append(node)
                else:
                    self._failures.pop(node, None)
                self._cond.notify_all()
            # An idle updater must not pin its last item (a whole desired state).
            del got, item
