"""The event feed (one call returns everything since the caller's cursor) and the live stream
of it (a WebSocket and Server-Sent Events, opened with a ticket or a key).

A marketplace key reads its renters' events (one renter's with X-Principal-ID, under the same
assertion rules as every renter call); a developer key the decisions and backtests of its own
bots, without the renter; an admin everything. A renter's browser streams that renter's
events with a single-use ticket the marketplace asks for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request, Response, WebSocket
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app import audit
from app.api_keys.authenticator import Caller
from app.api_keys.schemas import AssertionMode, Scope
from app.core.db import utcnow
from app.core.errors import (
    AppError,
    InvalidPrincipalAssertion,
    Unprocessable,
    error_response,
    error_responses,
)
from app.deps import PRINCIPAL_HEADER, CallerDep, RuntimeDep, SessionDep, checked_principal
from app.events import feed, live, tickets
from app.events.schemas import EventPage, StreamTicketOut
from app.events.types import EventType
from app.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["events"])


def _types(listed: str | None) -> frozenset[str] | None:
    if listed is None:
        return None
    named = listed.split(",")
    unknown = sorted(set(named) - set(EventType))
    if unknown:
        raise Unprocessable(
            f"unknown event type: {', '.join(repr(name) for name in unknown)}",
            details=[
                {"loc": "query.types", "message": f"not an event type: {name!r}"}
                for name in unknown
            ],
        )
    return frozenset(named)


@router.get("/events", response_model=EventPage, responses=error_responses(403))
async def list_events(
    request: Request,
    caller: CallerDep,
    after: Annotated[
        str | None, Query(description="`next_cursor` of the previous page; absent: from the oldest")
    ] = None,
    types: Annotated[
        str | None,
        Query(
            description="comma-separated event types to keep, e.g. `trade.filled,position.closed`"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="page size")] = 50,
) -> Response:
    """The events after `after` that this key may see, oldest first, and the cursor to poll
    with next (on an empty page too). Identical requests within `FEED_REPLICA_WINDOW_S` (2 s)
    get the same bytes, so that the replicas of one canister outcall agree: a new event shows
    at most that late, in the page after the cursor they all got."""
    # X-Principal-ID from the raw request, as the renter routes read it (app/openapi.py
    # documents it): a declared header costs FastAPI's parameter solving on every poll.
    principal = request.headers.get(PRINCIPAL_HEADER)
    after_seq = feed.decode_seq(after) if after is not None else 0
    wanted = _types(types)
    # Other keys do not act for renters: their share of the feed is their scope's.
    if principal is not None and caller.scope is Scope.marketplace:
        principal = await checked_principal(request, caller, principal)
    else:
        principal = None
    if caller.scope is Scope.marketplace and principal is None:
        _refuse_unsigned_renters_feed(caller)
    viewer = feed.Viewer(caller.scope, principal, caller.owner_user_id, caller.marketplace_id)
    runtime: Runtime = request.app.state.runtime

    # Rendered here rather than validated again against the response model: the poll the
    # canister makes most, and its envelopes are built from the outbox's own columns.
    async def render() -> bytes:
        page = await feed.page(runtime.rows, runtime.sessionmaker, viewer, after_seq, wanted, limit)
        return page.model_dump_json().encode()

    # Keyed by what the caller may see, past its key's and principal's checks: the same body
    # for each replica of one poll (feed.page_cache).
    body = await runtime.feed_pages.page((viewer, after_seq, wanted, limit), render)
    return Response(body, media_type="application/json")


def _refuse_unsigned_renters_feed(caller: Caller) -> None:
    """Every renter's events at once are for a marketplace whose renters' requests need no
    signature: an assertion names one renter, so where they are required the key alone (a
    leaked copy of it) must not read them all. One renter's events, signed, are still served."""
    if caller.assertion_mode is AssertionMode.required:
        raise InvalidPrincipalAssertion(
            "this key's renters' requests must be signed: read one renter's events with "
            "X-Principal-ID and its assertion",
            details=[{"loc": "header.X-Principal-ID", "message": "required with assertions"}],
        )


@router.post(
    "/stream-tickets",
    status_code=201,
    response_model=StreamTicketOut,
    responses=error_responses(401, 403, 422),
)
async def create_stream_ticket(
    request: Request, caller: CallerDep, runtime: RuntimeDep, session: SessionDep
) -> StreamTicketOut:
    """A single-use ticket for the renter named by X-Principal-ID (with its assertion where
    the key requires one) to open the live stream from a browser, which holds no key."""
    principal = await checked_principal(request, caller, request.headers.get(PRINCIPAL_HEADER))
    ttl = timedelta(seconds=runtime.settings.stream_ticket_ttl_s)
    ticket = tickets.issue(session, caller.api_key_id, principal, utcnow(), ttl)
    audit.record(session, request, "stream_ticket.create", "stream_ticket", ticket.id)
    return StreamTicketOut(
        ticket=ticket.text,
        expires_at=ticket.expires_at,
        url=f"/api/v1/events/ws?ticket={quote(ticket.text)}",
    )


@router.websocket("/events/ws")
async def events_websocket(websocket: WebSocket, ticket: str | None = None) -> None:
    """Live events as text frames `{"type": "event", "cursor", "event": <envelope>}`
    (docs/events.md); refused before the upgrade with the contract's error body."""
    try:
        opener = await live.open_stream(websocket, ticket)
    except AppError as exc:
        await websocket.send_denial_response(
            error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)
        )
        return
    runtime = websocket.app.state.runtime
    stream = live.LiveStream(runtime, opener)
    try:
        await websocket.accept()
        await live.serve_websocket(websocket, stream)
    finally:
        stream.close()


async def _stream_opener(
    request: Request,
    ticket: Annotated[
        str | None, Query(description="from POST /api/v1/stream-tickets; else X-API-Key")
    ] = None,
) -> live.Opener:
    return await live.open_stream(request, ticket)


async def _resume_after(
    runtime: RuntimeDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="the `id:` (event id) of the last event received: replay every later "
            "one first",
        ),
    ] = None,
) -> int | None:
    if last_event_id is None:
        return None
    async with runtime.read_sessionmaker() as session:
        return await feed.seq_of_event_id(session, last_event_id, loc="header.Last-Event-ID")


def _wanted_types(
    types: Annotated[
        str | None, Query(description="comma-separated event types to keep; absent: all")
    ] = None,
) -> frozenset[str] | None:
    return _types(types)


_SSE_EXAMPLE = (
    ": heartbeat\n\n"
    'data: {"id": "evt_0193b6c8a1f27c3e9d4b5a6f7e8d9c0b", "type": "trade.filled", ...}\n'
    "id: evt_0193b6c8a1f27c3e9d4b5a6f7e8d9c0b\n\n"
)


@router.get(
    "/events/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "an endless `text/event-stream`: each event's `data:` is its "
            "envelope and its `id:` the event's id; comments are heartbeats",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}, "example": _SSE_EXAMPLE}
            },
        },
        **error_responses(401, 403, 422),
    },
)
async def events_stream(
    runtime: RuntimeDep,
    opener: Annotated[live.Opener, Depends(_stream_opener)],
    after_seq: Annotated[int | None, Depends(_resume_after)],
    types: Annotated[frozenset[str] | None, Depends(_wanted_types)],
) -> AsyncIterator[ServerSentEvent]:
    """The live stream as Server-Sent Events: `id:` is the event's id, the data its
    envelope; idle, a comment every STREAM_HEARTBEAT_S."""
    # Everything that can refuse the request is a dependency: this body runs once the
    # response has begun.
    stream = live.LiveStream(runtime, opener)
    stream.want(types)
    async for event in live.sse_events(stream, after_seq, runtime.settings.stream_heartbeat_s):
        yield event
