"""The per-node work queue: coalescing, per-node exclusivity, retries, isolation."""

from __future__ import annotations

import threading
import time

import pytest

from nfd.master.queue import NodeQueue, Permanent


def test_coalesces_updates_for_one_node() -> None:
    seen: list[tuple[str, int]] = []
    gate = threading.Event()

    def apply(node: str, item: int) -> None:
        gate.wait(5)
        seen.append((node, item))

    q: NodeQueue[int] = NodeQueue(apply, parallelism=2)
    q.put("a", 1)  # taken at once, blocks on the gate
    time.sleep(0.05)
    for i in range(2, 50):
        q.put("a", i)
    gate.set()
    assert q.wait_idle(5)
    q.stop()
    assert seen == [("a", 1), ("a", 49)]


def test_one_node_never_runs_twice_at_once() -> None:
    active: dict[str, int] = {}
    overlap = []
    lock = threading.Lock()

    def apply(node: str, item: int) -> None:
        with lock:
            active[node] = active.get(node, 0) + 1
            if active[node] > 1:
                overlap.append(node)
        time.sleep(0.002)
        with lock:
            active[node] -= 1

    q: NodeQueue[int] = NodeQueue(apply, parallelism=8)
    for i in range(300):
        q.put(f"n{i % 5}", i)
    assert q.wait_idle(10)
    q.stop()
    assert overlap == []


def test_failing_node_retried_and_does_not_block_others() -> None:
    attempts: dict[str, int] = {}
    done: list[str] = []
    failures: list[str] = []

    def apply(node: str, item: int) -> None:
        attempts[node] = attempts.get(node, 0) + 1
        if node == "bad" and attempts[node] < 4:
            raise RuntimeError("API down")
        if node == "gone":
            raise Permanent("not found")
        done.append(node)

    q: NodeQueue[int] = NodeQueue(
        apply, parallelism=1, base_delay=0.01, on_failure=lambda n, e: failures.append(n)
    )
    q.put("bad", 1)
    q.put("gone", 1)
    for i in range(5):
        q.put(f"ok{i}", 1)
    assert q.wait_idle(5)
    q.stop()
    assert attempts["bad"] == 4 and "bad" in done
    assert attempts["gone"] == 1 and "gone" not in done
    assert all(f"ok{i}" in done for i in range(5))
    # The good nodes did not wait for bad's retries.
    assert done.index("ok4") < done.index("bad")
    assert failures.count("bad") == 3


def test_pause_and_resume() -> None:
    seen: list[str] = []
    q: NodeQueue[int] = NodeQueue(lambda n, i: seen.append(n), parallelism=2)
    q.pause()
    q.put("a", 1)
    time.sleep(0.1)
    assert seen == []
    q.resume()
    assert q.wait_idle(5)
    q.stop()
    assert seen == ["a"]


def test_a_name_that_is_no_node_name_is_refused() -> None:
    q: NodeQueue[int] = NodeQueue(lambda n, i: None, parallelism=1)
    for name in ("n/status", "..", "a%2F", ""):
        with pytest.raises(ValueError, match="node name"):
            q.put(name, 1)
    assert q.pending() == 0
    q.stop()


def test_a_permanent_error_drops_the_item_once_and_is_reported() -> None:
    attempts: list[str] = []
    dropped: list[tuple[str, str]] = []

    def apply(node: str, item: int) -> None:
        attempts.append(node)
        raise Permanent("403 forbidden")

    q: NodeQueue[int] = NodeQueue(
        apply, parallelism=1, base_delay=0.01, on_permanent=lambda n, e: dropped.append((n, str(e)))
    )
    q.put("n", 1)
    assert q.wait_idle(5)
    time.sleep(0.1)  # a retry would have run by now
    q.stop()
    assert attempts == ["n"] and dropped == [("n", "403 forbidden")]


def test_discard_forgets_a_pending_item() -> None:
    gate = threading.Event()
    seen: list[tuple[str, int]] = []

    def apply(node: str, item: int) -> None:
        gate.wait(5)
        seen.append((node, item))

    q: NodeQueue[int] = NodeQueue(apply, parallelism=1)
    q.put("a", 1)
    time.sleep(0.05)
    q.put("b", 1)
    q.put("c", 1)
    q.discard("b")
    gate.set()
    assert q.wait_idle(5)
    q.stop()
    assert seen == [("a", 1), ("c", 1)]
