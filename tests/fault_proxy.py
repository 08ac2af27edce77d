"""A TCP proxy of our own between the workers and the sandbox exchange, for the faults that
live on the wire after an order reached the exchange: its reply held back (past the client's
timeout), or the connection cut once the request went through.

Only replies to `POST /api/v3/order` are touched; every other request passes untouched. The
fault in force when an order request passes is the one applied to its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

_ORDER = b"POST /api/v3/order"
_CHUNK = 65536


@dataclass
class _Fault:
    hold_s: float = 0.0
    cut: bool = False


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._fault = _Fault()
        self.url = ""

    def hold_order_replies(self, seconds: float) -> None:
        self._fault = _Fault(hold_s=seconds)

    def cut_after_orders(self) -> None:
        self._fault = _Fault(cut=True)

    def heal(self) -> None:
        self._fault = _Fault()

    async def _serve(self, started: threading.Event, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started.set()
        async with server:
            await stop.wait()

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        # The fault of the order whose reply is awaited on this connection, if any.
        awaited: list[_Fault] = []

        async def requests() -> None:
            while chunk := await client_reader.read(_CHUNK):
                if chunk.startswith(_ORDER):
                    awaited.append(self._fault)
                upstream_writer.write(chunk)
                await upstream_writer.drain()

        async def replies() -> None:
            while chunk := await upstream_reader.read(_CHUNK):
                fault = awaited.pop(0) if awaited else _Fault()
                if fault.cut:
                    return  # the order is placed; its answer never arrives
                if fault.hold_s:
                    await asyncio.sleep(fault.hold_s)
                client_writer.write(chunk)
                await client_writer.drain()

        pumps = [asyncio.create_task(requests()), asyncio.create_task(replies())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_writer, upstream_writer):
                writer.close()


@contextlib.contextmanager
def serve_fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(proxy._serve(started, stop),), daemon=True
    )
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("the fault proxy did not start")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
