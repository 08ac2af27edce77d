"""Connections to Binance's combined market streams, each kept open and subscribed.

Every connection opens `/stream` (frames wrapped as `{"stream", "data"}`) and follows the
streams it is given with live SUBSCRIBE / UNSUBSCRIBE requests, paced under Binance's five
incoming messages a second. The `websockets` client answers the server's pings itself. A
dropped connection (Binance drops every one after 24 h) reopens after a backoff with full
jitter, and every opening in the process waits its turn: Binance allows 300 new connections
per 5 minutes per IP. The pool splits the wanted streams over as many connections as its
per-connection limit (Binance's: 1,024) needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

log = logging.getLogger(__name__)

# Under Binance's 5 incoming messages a second, with room for its clock and ours.
REQUEST_INTERVAL_S = 0.25
# Streams per request: a long SUBSCRIBE is one message, but a short one fails alone.
STREAMS_PER_REQUEST = 100
# 300 connections per 5 minutes per IP: one a second at most, whatever reconnects at once.
CONNECT_INTERVAL_S = 1.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
OPEN_TIMEOUT_S = 10.0

OnData = Callable[[str, Any], None]
OnSubscribed = Callable[[list[str]], None]


class ConnectionPacer:
    """Spaces the openings of every connection of a process."""

    def __init__(self, interval_s: float = CONNECT_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def turn(self) -> None:
        async with self._lock:
            wait = self._next - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next = time.monotonic() + self._interval_s


def backoff_s(failures: int) -> float:
    """Full jitter: a random wait up to the exponential bound, so that connections dropped
    together do not come back together."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**failures))  # noqa: S311


class StreamConnection:
    """One combined-stream connection and the streams it should carry."""

    def __init__(
        self, url: str, on_data: OnData, on_subscribed: OnSubscribed, pacer: ConnectionPacer
    ) -> None:
        self.url = f"{url.rstrip('/')}/stream"
        self.wanted: set[str] = set()
        # Acknowledged by the server on the current connection.
        self.subscribed: set[str] = set()
        self.last_message_at: float | None = None
        self.opened = 0  # times this connection was opened: 1 plus its reconnections
        self._on_data = on_data
        self._on_subscribed = on_subscribed
        self._pacer = pacer
        self._changed = asyncio.Event()
        self._requested: set[str] = set()
        self._in_flight: dict[int, tuple[str, list[str]]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    def want(self, streams: set[str]) -> None:
        if streams != self.wanted:
            self.wanted = set(streams)
            self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"stream {self.url}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def healthy(self, silence_s: float) -> bool:
        last = self.last_message_at
        return last is not None and time.monotonic() - last < silence_s

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._pacer.turn()
            try:
                async with connect(self.url, open_timeout=OPEN_TIMEOUT_S) as ws:
                    failures = 0
                    self.opened += 1
                    await self._serve(ws)
                log.warning(
                    "market stream connection closed; reopening",
                    extra={"url": self.url, "opened": self.opened},
                )
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, InvalidURI) as exc:
                failures += 1
                log.warning(
                    "market stream connection failed; reopening after a backoff",
                    extra={"url": self.url, "error": repr(exc), "failures": failures},
                )
            finally:
                self.subscribed = set()
                self.last_message_at = None
            await asyncio.sleep(backoff_s(failures))

    async def _serve(self, ws: ClientConnection) -> None:
        self._requested, self._in_flight = set(), {}
        self._changed.set()
        reader = asyncio.create_task(self._read(ws))
        syncer = asyncio.create_task(self._sync(ws))
        try:
            done, _ = await asyncio.wait({reader, syncer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            syncer.cancel()
        for task in done:
            task.result()  # the connection's error, if it ended on one

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            self.last_message_at = time.monotonic()
            frame = json.loads(raw)
            if "stream" in frame:
                self._on_data(frame["stream"], frame.get("data"))
            elif "id" in frame:
                self._answered(frame)

    def _answered(self, answer: dict[str, Any]) -> None:
        method, streams = self._in_flight.pop(answer["id"], ("", []))
        if "error" in answer:
            log.error(
                "market stream request refused",
                extra={"method": method, "streams": streams[:10], "error": answer["error"]},
            )
            self._requested.difference_update(streams)  # asked again on the next change
        elif method == "SUBSCRIBE":
            self.subscribed.update(streams)
            self._on_subscribed(streams)
        elif method == "UNSUBSCRIBE":
            self.subscribed.difference_update(streams)

    async def _sync(self, ws: ClientConnection) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            for method, streams in (
                ("UNSUBSCRIBE", sorted(self._requested - self.wanted)),
                ("SUBSCRIBE", sorted(self.wanted - self._requested)),
            ):
                for start in range(0, len(streams), STREAMS_PER_REQUEST):
                    await self._request(ws, method, streams[start : start + STREAMS_PER_REQUEST])

    async def _request(self, ws: ClientConnection, method: str, streams: list[str]) -> None:
        request_id = next(self._ids)
        self._in_flight[request_id] = (method, streams)
        if method == "SUBSCRIBE":
            self._requested.update(streams)
        else:
            self._requested.difference_update(streams)
        await ws.send(json.dumps({"method": method, "params": streams, "id": request_id}))
        await asyncio.sleep(REQUEST_INTERVAL_S)


class StreamPool:
    """The wanted streams over as few connections as the per-connection limit allows; a
    stream stays on its connection while it is wanted."""

    def __init__(
        self,
        url: str,
        on_data: OnData,
        on_subscribed: OnSubscribed,
        per_connection: int,
        pacer: ConnectionPacer | None = None,
    ) -> None:
        self._url = url
        self._on_data = on_data
        self._on_subscribed = on_subscribed
        self._per_connection = per_connection
        self._pacer = pacer or ConnectionPacer()
        self.connections: list[StreamConnection] = []

    def want(self, streams: set[str]) -> None:
        placed: set[str] = set()
        for connection in self.connections:
            kept = connection.wanted & streams
            connection.want(kept)
            placed |= kept
        new = sorted(streams - placed)
        for connection in self.connections:
            room = self._per_connection - len(connection.wanted)
            if room > 0 and new:
                connection.want(connection.wanted | set(new[:room]))
                new = new[room:]
        while new:
            connection = StreamConnection(
                self._url, self._on_data, self._on_subscribed, self._pacer
            )
            connection.want(set(new[: self._per_connection]))
            new = new[self._per_connection :]
            connection.start()
            self.connections.append(connection)

    async def prune(self) -> None:
        """Close the connections left with nothing to stream."""
        idle = [c for c in self.connections if not c.wanted and not c.subscribed]
        self.connections = [c for c in self.connections if c not in idle]
        for connection in idle:
            await connection.stop()

    @property
    def subscribed(self) -> set[str]:
        return set().union(*(c.subscribed for c in self.connections))

    def healthy(self, silence_s: float) -> bool:
        """Some connection has spoken within `silence_s`."""
        return any(c.healthy(silence_s) for c in self.connections)

    async def close(self) -> None:
        for connection in self.connections:
            await connection.stop()
        self.connections = []
