"""The event feed: one call returns everything since the caller's cursor.

A marketplace key reads its renters' events (one renter's with X-Principal-ID, under the same
assertion rules as every renter call); a developer key the decisions and backtests of its own
bots, without the renter; an admin everything.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from app.api_keys.authenticator import Caller
from app.api_keys.schemas import AssertionMode, Scope
from app.core.errors import InvalidPrincipalAssertion, Unprocessable, error_responses
from app.deps import PRINCIPAL_HEADER, CallerDep, RuntimeDep, checked_principal
from app.events import feed
from app.events.schemas import EventPage
from app.events.types import EventType

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
    runtime: RuntimeDep,
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
    principal: Annotated[
        str | None,
        Header(
            alias=PRINCIPAL_HEADER,
            description="marketplace keys: only this renter's events; other keys' is ignored",
        ),
    ] = None,
) -> EventPage:
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
    async with runtime.read_sessionmaker() as session:
        await feed.sequence_if_behind(runtime.sessionmaker, session)
        return await feed.page(session, viewer, after_seq, wanted, limit)


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
