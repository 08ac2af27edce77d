"""One live stream: who opens it (a ticket, or a developer's or admin's key), and its order.

A connection is subscribed at the hub before anything else, so every event after the hub's
`last_seq` then reaches it. A resume replays from the outbox every event after the client's
cursor up to the newest, and the live events queued meanwhile whose `seq` the replay already
sent are skipped: no gap at the seam, and no duplicate. The last `seq` sent is the
connection's own, and only ever sent under `sending`, which replay and live both hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any

from fastapi.sse import ServerSentEvent
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.api_keys.schemas import Scope
from app.core.db import utcnow
from app.core.errors import AppError, Forbidden, Unauthenticated, Unprocessable
from app.deps import API_KEY_HEADER, authenticate
from app.events import feed, tickets
from app.events.hub import Delivery, SlowClient, Subscriber
from app.events.schemas import Resume, Subscribe
from app.models import Event
from app.runtime import Runtime

# Events read from the outbox at a time while replaying.
REPLAY_PAGE = 200
_MESSAGES: dict[str, type[Subscribe | Resume]] = {"subscribe": Subscribe, "resume": Resume}
# "Try again later": the client resumes from its last cursor.
SLOW_CLIENT_CLOSE = 1013
# "Policy violation": the key behind the stream was revoked; reopening it is refused too.
REVOKED_CLOSE = 1008


@dataclass(frozen=True)
class Opener:
    """Whose events a connection streams, and the API key whose authority opened it (the
    ticket's issuer, or the key shown): the connection ends when that key is revoked."""

    viewer: feed.Viewer
    api_key_id: str


async def open_stream(connection: HTTPConnection, ticket: str | None) -> Opener:
    """Who opens the connection; Unauthenticated (401) for a ticket that is unknown, used,
    expired, of a revoked key or shown with another key, or without either."""
    runtime: Runtime = connection.app.state.runtime
    # A key shown is checked first: an unknown one does not use the ticket up (another key's
    # does: whoever showed the ticket had it from elsewhere).
    caller = await authenticate(connection) if API_KEY_HEADER in connection.headers else None
    if ticket is None:
        if caller is None:
            raise Unauthenticated("open the stream with ?ticket= or an X-API-Key")
        if caller.scope is Scope.marketplace:
            raise Forbidden(
                "a marketplace key opens a renter's stream with a ticket (POST "
                "/api/v1/stream-tickets): the renter's browser holds no key"
            )
        return Opener(
            feed.Viewer(caller.scope, owner_user_id=caller.owner_user_id), caller.api_key_id
        )
    holder = await tickets.redeem(runtime.sessionmaker, ticket, utcnow())
    if holder is None:
        raise Unauthenticated("the stream ticket is unknown, used, expired or its key revoked")
    if caller is not None and caller.api_key_id != holder.api_key_id:
        raise Unauthenticated("the stream ticket was issued to another key")
    return Opener(
        feed.Viewer(
            Scope.marketplace, principal=holder.principal, marketplace_id=holder.marketplace_id
        ),
        holder.api_key_id,
    )


class LiveStream:
    """A connection's events: a replay after a cursor, the hub's live ones, each sent once."""

    def __init__(self, runtime: Runtime, opener: Opener) -> None:
        self._reads = runtime.read_sessionmaker
        self._hub = runtime.hub
        self.viewer = opener.viewer
        self.types: frozenset[str] | None = None
        self.subscriber: Subscriber = self._hub.subscribe(opener.viewer, opener.api_key_id)
        # From now on, unless the client resumes from elsewhere.
        self.last_seq = self._hub.last_seq
        self.sending = asyncio.Lock()

    def close(self) -> None:
        self._hub.unsubscribe(self.subscriber)

    async def replay(self, after_seq: int) -> AsyncIterator[Delivery]:
        """Every event after `after_seq` the viewer may see (of the wanted types), oldest
        first, up to the newest; hold `sending` while iterating."""
        self.last_seq = after_seq
        while True:
            async with self._reads() as session:
                rows = await feed.visible_after(
                    session, self.viewer, self.last_seq, self.types, REPLAY_PAGE
                )
            for row in rows:
                yield self._sent(row)
            if len(rows) < REPLAY_PAGE:
                return

    def _sent(self, row: Event) -> Delivery:
        delivery = Delivery(row)
        self.last_seq = delivery.seq
        return delivery

    async def next_live(self) -> Delivery:
        """The next live event to send (SlowClient once dropped); call `take` on it under
        `sending` before sending it."""
        return await self.subscriber.next()

    def take(self, delivery: Delivery) -> bool:
        """Whether to send this live event: not sent yet, and of a wanted type."""
        if delivery.seq <= self.last_seq:
            return False
        self.last_seq = delivery.seq
        return self.types is None or delivery.type in self.types

    def want(self, types: Collection[str] | None) -> None:
        self.types = frozenset(types) if types is not None else None


async def serve_websocket(websocket: WebSocket, stream: LiveStream) -> None:
    """Send live events and answer the client's messages until either side ends; a client
    dropped for falling behind is closed with 1013 (try again later: resume), one whose key
    was revoked with 1008."""
    tasks = [
        asyncio.create_task(_send_live(websocket, stream)),
        asyncio.create_task(_answer(websocket, stream)),
        asyncio.create_task(stream.subscriber.dropped.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if stream.subscriber.dropped.is_set():
        code, reason = (
            (REVOKED_CLOSE, "the API key behind this stream was revoked")
            if stream.subscriber.revoked
            else (SLOW_CLIENT_CLOSE, "too far behind: resume from your cursor")
        )
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.close(code, reason)
        return
    for task in done:
        failure = task.exception()
        if failure is not None and not isinstance(failure, WebSocketDisconnect | SlowClient):
            raise failure


async def _send_live(websocket: WebSocket, stream: LiveStream) -> None:
    while True:
        delivery = await stream.next_live()
        async with stream.sending:
            if stream.take(delivery):
                await websocket.send_text(delivery.frame(stream.viewer.anonymous))


async def _answer(websocket: WebSocket, stream: LiveStream) -> None:
    """Each client message in turn; one the server does not understand is an error frame."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        async with stream.sending:
            try:
                await _obey(websocket, stream, message.get("text"))
            except AppError as exc:
                await websocket.send_text(_error_frame(exc.code, exc.message, exc.details))


async def _obey(websocket: WebSocket, stream: LiveStream, text: str | None) -> None:
    if text is None:
        raise Unprocessable(
            "messages are JSON text frames",
            details=[{"loc": "message", "message": "a binary frame"}],
        )
    command = _parse(text)
    if isinstance(command, Subscribe):
        stream.want(command.types)
        await websocket.send_text(json.dumps({"type": "subscribed", "types": command.types}))
        return
    async for delivery in stream.replay(feed.decode_seq(command.after, loc="message.after")):
        await websocket.send_text(delivery.frame(stream.viewer.anonymous))


def _parse(text: str) -> Subscribe | Resume:
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    kind = _MESSAGES.get(str(message.get("type"))) if isinstance(message, dict) else None
    if kind is None:
        raise Unprocessable(
            f"messages are JSON objects whose type is one of {', '.join(_MESSAGES)}",
            details=[{"loc": "message.type", "message": "unknown message type"}],
        )
    try:
        return kind.model_validate(message)
    except ValidationError as exc:
        raise Unprocessable(
            f"not a valid {message['type']} message",
            details=[
                {"loc": ".".join(["message", *map(str, err["loc"])]), "message": err["msg"]}
                for err in exc.errors()
            ],
        ) from None


def _error_frame(code: str, message: str, details: list[dict[str, Any]]) -> str:
    error = {"code": code, "message": message, "details": details}
    return json.dumps({"type": "error", "error": error})


def _sse(delivery: Delivery, anonymous: bool) -> ServerSentEvent:
    return ServerSentEvent(raw_data=delivery.envelope(anonymous), id=delivery.event_id)


async def sse_events(
    stream: LiveStream, after_seq: int | None, heartbeat_s: float
) -> AsyncIterator[ServerSentEvent]:
    """The stream as Server-Sent Events: `id:` is the event's id (a reconnecting browser sends
    it back as Last-Event-ID), the data the envelope; a comment when idle for `heartbeat_s`. A
    client dropped for falling behind sees the stream end, and reconnects; so does one whose
    key was revoked, and is refused."""
    anonymous = stream.viewer.anonymous
    try:
        if after_seq is not None:
            async for delivery in stream.replay(after_seq):
                yield _sse(delivery, anonymous)
        while True:
            try:
                delivery = await asyncio.wait_for(stream.next_live(), heartbeat_s)
            except TimeoutError:
                yield ServerSentEvent(comment="heartbeat")
                continue
            except SlowClient:
                return
            if stream.take(delivery):
                yield _sse(delivery, anonymous)
    finally:
        stream.close()
