"""Fixtures for master tests: an in-process master on a loopback port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from nfd.master.core import Master, WorkItem
from nfd.master.policy import PolicyConfig
from nfd.master.server import GrpcServer, TLSFiles


@dataclass
class RunningMaster:
    master: Master
    server: GrpcServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    applied: list[tuple[str, WorkItem]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop)
        fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.master.stop()


def start_master(
    policy: PolicyConfig | None = None,
    *,
    port: int = 0,
    tls: TLSFiles | None = None,
    verify_node_name: bool = False,
    apply: Callable[[str, WorkItem], Any] | None = None,
    **server_options: Any,
) -> RunningMaster:
    applied: list[tuple[str, WorkItem]] = []

    def record(node: str, item: WorkItem) -> None:
        applied.append((node, item))
        if apply is not None:
            apply(node, item)

    master = Master(policy or PolicyConfig(), record)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = GrpcServer(
                master,
                port,
                tls=tls,
                verify_node_name=verify_node_name,
                host="127.0.0.1",
                **server_options,
            )
            loop.run_until_complete(server.start())
            holder["server"] = server
        except BaseException as err:  # noqa: BLE001 - reported to the test thread
            holder["error"] = err
        ready.set()
        if "server" in holder:
            loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in holder:
        raise holder["error"]
    return RunningMaster(master, holder["server"], loop, thread, applied)


@pytest.fixture
def running_master() -> Iterator[RunningMaster]:
    m = start_master()
    yield m
    m.stop()
