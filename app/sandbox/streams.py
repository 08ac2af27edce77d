"""Binance's spot market streams, served by the sandbox on its own port beside its REST API.

Raw streams at `/ws/<stream>` (or `/ws`, then SUBSCRIBE), combined ones at
`/stream?streams=<a>/<b>` whose frames wrap as `{"stream": ..., "data": ...}`; live
SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS / SET_PROPERTY / GET_PROPERTY requests, answered
as Binance answers them, errors included. Binance's connection rules, each a `StreamRules`
field so that tests can make them short: a ping frame every 20 s and a disconnect when no pong
comes within a minute (uvicorn's keepalive: ASGI gives an application no control frames, so
`StreamRules.uvicorn_options` hands these two to the server), at most 1,024 streams and 5
incoming messages a second per connection (beyond either, a close with 1008), and a close
with 1001 after 24 h. What each stream sends is app/sandbox/feeds.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypedDict

from starlette.websockets import WebSocket, WebSocketDisconnect

from app.sandbox.feeds import Feed, open_feed
from app.sandbox.market import Market

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
# What Binance takes as a stream name at all; a well-formed name it does not serve is accepted
# and stays silent, an ill-formed one is refused.
STREAM_NAME = re.compile(r"^[A-Za-z0-9!_]+@[A-Za-z0-9_@]+$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9]{1,36}$")
INT64 = range(-(2**63), 2**63)
POLICY_VIOLATION = 1008
GOING_AWAY = 1001


class KeepaliveOptions(TypedDict):
    """uvicorn's keepalive settings, which are the streams' ping and pong rules."""

    ws_ping_interval: float
    ws_ping_timeout: float


@dataclass
class StreamRules:
    """Binance's rules for one stream connection; every interval in seconds."""

    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_streams: int = 1024
    max_messages_per_s: int = 5
    max_lifetime_s: float = 86_400.0
    # How often every subscribed stream is sent its updates (Binance: 1 s, klines 2 s).
    update_interval_s: float = 1.0

    def uvicorn_options(self) -> KeepaliveOptions:
        return {"ws_ping_interval": self.ping_interval_s, "ws_ping_timeout": self.pong_timeout_s}


class StreamLimitExceeded(Exception):
    """Binance answers nothing: it closes the connection (1008, this reason)."""


class StreamRequestError(Exception):
    """A request Binance answers with `{"error": {"code", "msg"}, "id"}`."""

    def __init__(self, code: int, msg: str, request_id: Any = None, *, closes: bool = False):
        super().__init__(msg)
        self.code, self.msg, self.request_id, self.closes = code, msg, request_id, closes


def _position(raw: str, index: int) -> str:
    """serde's "at line L column C" for a character index of the request's text."""
    line = raw.count("\n", 0, index) + 1
    return f"at line {line} column {index - (raw.rfind(chr(10), 0, index) + 1)}"


def _invalid(msg: str, request_id: Any = None, *, closes: bool = False) -> StreamRequestError:
    return StreamRequestError(2, f"Invalid request: {msg}", request_id, closes=closes)


def _valid_id(request_id: Any) -> bool:
    """Binance's ids: a 64-bit signed integer, up to 36 letters and digits, or null."""
    if isinstance(request_id, bool):
        return False
    if isinstance(request_id, int):
        return request_id in INT64
    return request_id is None or (
        isinstance(request_id, str) and bool(REQUEST_ID.match(request_id))
    )


def parse_request(raw: str) -> tuple[str, list[Any], Any]:
    """(method, params, id) of a request's text, or the StreamRequestError Binance answers."""
    try:
        request = json.loads(raw)
    except json.JSONDecodeError as exc:
        what = exc.msg.replace("Expecting", "expected")
        raise StreamRequestError(
            3, f"Invalid JSON: {what} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(request, dict):
        raise _invalid(f"expected a JSON object {_position(raw, len(raw.rstrip()))}")
    request_id = request.get("id")
    if "id" not in request or not _valid_id(request_id):
        raise _invalid("request ID must be an unsigned integer")
    method = request.get("method")
    if "method" not in request:
        raise _invalid(f"missing field `method` {_position(raw, len(raw.rstrip()))}", request_id)
    if method not in METHODS:
        named = re.search(r'"method"\s*:\s*"[^"]*"', raw)
        where = f" {_position(raw, named.end())}" if named else ""
        expected = ", ".join(f"`{m}`" for m in METHODS)
        raise _invalid(f"unknown variant `{method}`, expected one of {expected}{where}", request_id)
    params = request.get("params", [])
    if not isinstance(params, list):
        raise _invalid("invalid type: expected a sequence of parameters", request_id)
    return method, params, request_id


def _check_names(streams: list[Any], request_id: Any) -> None:
    for stream in streams:
        if not isinstance(stream, str) or not STREAM_NAME.match(stream):
            raise _invalid("invalid stream", request_id, closes=True)


@dataclass(eq=False)  # each connection is its own: kept in a set
class Connection:
    websocket: WebSocket
    combined: bool
    rules: StreamRules
    market: Market
    feeds: dict[str, Feed | None] = field(default_factory=dict)  # in subscription order
    received: deque[float] = field(default_factory=deque)
    closed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def subscribe(self, streams: list[Any], request_id: Any = None) -> None:
        _check_names(streams, request_id)
        added = [s for s in dict.fromkeys(streams) if s not in self.feeds]
        if len(self.feeds) + len(added) > self.rules.max_streams:
            raise StreamLimitExceeded(f"Too many streams: at most {self.rules.max_streams}")
        for stream in added:
            self.feeds[stream] = open_feed(self.market, stream)

    def over_rate(self) -> bool:
        """Counts this incoming message: more than the limit within one second closes."""
        now = time.monotonic()
        self.received.append(now)
        while self.received and self.received[0] <= now - 1:
            self.received.popleft()
        return len(self.received) > self.rules.max_messages_per_s

    def answer(self, raw: str) -> dict[str, Any]:
        method, params, request_id = parse_request(raw)
        result: Any = None
        if method == "SUBSCRIBE":
            self.subscribe(params, request_id)
        elif method == "UNSUBSCRIBE":
            _check_names(params, request_id)
            for stream in params:
                self.feeds.pop(stream, None)
        elif method == "LIST_SUBSCRIPTIONS":
            if params:
                raise _invalid("too many parameters", request_id)
            result = list(self.feeds)
        else:
            result = self._property(method, params, request_id)
        return {"result": result, "id": request_id}

    def _property(self, method: str, params: list[Any], request_id: Any) -> Any:
        if not params or not isinstance(params[0], str):
            raise _invalid("property name must be a string", request_id)
        if params[0] != "combined":
            raise StreamRequestError(0, "Unknown property", request_id)
        if method == "GET_PROPERTY":
            return self.combined
        if len(params) != 2 or not isinstance(params[1], bool):
            raise StreamRequestError(1, "Invalid value type: expected Boolean", request_id)
        self.combined = params[1]
        return None

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            if not self.closed:
                await self.websocket.send_text(json.dumps(message, separators=(",", ":")))

    async def emit(self, stream: str, payload: dict[str, Any]) -> None:
        await self.send({"stream": stream, "data": payload} if self.combined else payload)

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            if not self.closed:
                self.closed = True
                with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                    await self.websocket.close(code, reason)


class StreamHub:
    """Every open stream connection of one sandbox, and the operator's controls over them."""

    def __init__(self, market: Market, rules: StreamRules) -> None:
        self.market = market
        self.rules = rules
        self.connections: set[Connection] = set()
        self.paused: set[str] = set()

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        combined = websocket.url.path.startswith("/stream")
        named = websocket.path_params.get("streams") or websocket.query_params.get("streams", "")
        connection = Connection(websocket, combined, self.rules, self.market)
        try:
            connection.subscribe([s for s in named.split("/") if s])
        except (StreamRequestError, StreamLimitExceeded) as refused:
            await connection.close(POLICY_VIOLATION, str(refused))
            return
        self.connections.add(connection)
        pusher = asyncio.create_task(self._push(connection))
        try:
            await asyncio.wait_for(self._read(connection), self.rules.max_lifetime_s)
        except TimeoutError:
            await connection.close(GOING_AWAY, "Connection lifetime of the stream server reached")
        finally:
            pusher.cancel()
            self.connections.discard(connection)

    async def _read(self, connection: Connection) -> None:
        while True:
            message = await connection.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if connection.over_rate():
                await connection.close(POLICY_VIOLATION, "Too many requests")
                return
            raw = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
            try:
                await connection.send(connection.answer(raw))
            except StreamLimitExceeded as exceeded:
                await connection.close(POLICY_VIOLATION, str(exceeded))
                return
            except StreamRequestError as refused:
                error = {"code": refused.code, "msg": refused.msg}
                await connection.send({"error": error, "id": refused.request_id})
                if refused.closes:
                    await connection.close(POLICY_VIOLATION, refused.msg)
                    return

    async def _push(self, connection: Connection) -> None:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            while not connection.closed:
                now_ms = int(time.time() * 1000)
                for stream, feed in list(connection.feeds.items()):
                    if feed is None or feed.symbol in self.paused:
                        continue
                    for payload in feed.updates(now_ms):
                        await connection.emit(stream, payload)
                await asyncio.sleep(self.rules.update_interval_s)

    async def drop_all(self) -> int:
        dropped = list(self.connections)
        for connection in dropped:
            await connection.close(GOING_AWAY, "Dropped by the sandbox's operator")
        return len(dropped)
