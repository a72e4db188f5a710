"""A hostile client for nfd-master: opens many connections or streams from this one
process, holds them for a bounded time and prints a JSON summary of what the master
did to them. Loopback only; it always ends by itself after ``--hold`` seconds.

Modes:
- ``silent-streams``: FeatureStream calls that never send a message (16 per connection);
- ``tcp``: TCP connections that never send a byte (a half-open handshake);
- ``h2-idle``: connections that send the HTTP/2 preface and SETTINGS, then nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import selectors
import socket
import statistics
import time
from collections import Counter
from typing import Any

STREAMS_PER_CONNECTION = 16
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


async def silent_streams(address: str, count: int, hold: float) -> dict[str, Any]:
    import grpc

    from nfd._proto import nfdstream_pb2_grpc

    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range((count + STREAMS_PER_CONNECTION - 1) // STREAMS_PER_CONNECTION)
    ]
    outcomes: Counter[str] = Counter()
    ended_after: list[float] = []
    began = time.monotonic()

    async def one(channel: Any) -> None:
        call = nfdstream_pb2_grpc.FeatureStreamStub(channel).Connect()
        try:
            async with asyncio.timeout(hold):
                await call.read()
            outcomes["eof"] += 1
        except TimeoutError:
            outcomes["held"] += 1
            call.cancel()
            return
        except grpc.aio.AioRpcError as err:
            outcomes[err.code().name] += 1
        ended_after.append(time.monotonic() - began)

    await asyncio.gather(*(one(channels[i // STREAMS_PER_CONNECTION]) for i in range(count)))
    for channel in channels:
        await channel.close()
    return {"outcomes": dict(outcomes), **_times(ended_after)}


def raw_connections(host: str, port: int, count: int, hold: float, send: bytes) -> dict[str, Any]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    socks = []
    refused = 0
    for _ in range(count):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect((host, port))
            if send:
                s.sendall(send)
        except OSError:
            refused += 1
            s.close()
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    began = time.monotonic()
    closed_after: list[float] = []
    while sel.get_map() and time.monotonic() - began < hold:
        for key, _ in sel.select(timeout=0.2):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:  # closed by the master
                sel.unregister(sock)
                closed_after.append(time.monotonic() - began)
    still_open = len(sel.get_map())
    for s in socks:
        s.close()
    return {
        "opened": len(socks),
        "refused": refused,
        "closed_by_master": len(closed_after),
        "still_open": still_open,
        **_times(closed_after),
    }


def _times(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median_s": None, "max_s": None}
    return {"median_s": round(statistics.median(values), 2), "max_s": round(max(values), 2)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["silent-streams", "tcp", "h2-idle"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--hold", type=float, default=15.0)
    a = p.parse_args()
    if a.mode == "silent-streams":
        out = asyncio.run(silent_streams(f"{a.host}:{a.port}", a.count, a.hold))
    else:
        send = H2_PREFACE if a.mode == "h2-idle" else b""
        out = raw_connections(a.host, a.port, a.count, a.hold, send)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
