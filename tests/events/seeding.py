"""Renters' events seeded straight through the writer, as a worker records them
(app.events.service.record_for_renter): the one way the events, stream and webhooks tests
write them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope
from app.events import feed
from app.events.service import record_for_renter
from app.events.types import EventType
from app.marketplaces import repository as marketplaces
from app.marketplaces.service import DEFAULT_MARKETPLACE
from app.models import User
from app.users import repository as users


async def default_renter(session: AsyncSession, principal: str) -> User:
    """The principal's renter in the default marketplace (the `marketplace_key` fixture's),
    made on first use."""
    home = await marketplaces.get_or_create(session, DEFAULT_MARKETPLACE)
    renter = await users.get_or_create_renter(session, home.id, principal)
    await session.flush()
    return renter


async def write_renter_events(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: str,
    count: int = 1,
    type: EventType = EventType.trade_filled,
    *,
    numbered: bool = False,
    **data: Any,
) -> list[str]:
    """`count` events of the principal's renter in one transaction; their `evt_` ids.
    `numbered`: numbered for the feed too, as beat's sequencer would (webhooks dispatch only
    numbered events)."""
    async with session_scope(sessionmaker) as session:
        renter = await default_renter(session, principal)
        written = [record_for_renter(session, type, renter, {"n": n, **data}) for n in range(count)]
    if numbered:
        await feed.sequence(sessionmaker)
    return [feed.envelope_id(event.id) for event in written]
