"""Stream tickets: how a renter's browser, which holds no API key, opens the live stream.

The marketplace asks for a ticket with its key, for one renter (under the key's assertion
rules), and hands it to the browser. A ticket opens one stream, once, within its time to live;
the table keeps only its SHA-256, so a copy of the table opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import new_id, session_scope
from app.events import repository
from app.models import StreamTicket

# 256 bits from the system's CSPRNG, URL-safe base64 (43 characters).
_TICKET_BYTES = 32


@dataclass(frozen=True)
class Ticket:
    id: str
    text: str
    expires_at: datetime


@dataclass(frozen=True)
class Holder:
    """Whom a redeemed ticket was issued to: the issuing key and the renter (a principal of
    the key's marketplace)."""

    api_key_id: str
    principal: str
    marketplace_id: str


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def issue(
    session: AsyncSession, api_key_id: str, principal: str, now: datetime, ttl: timedelta
) -> Ticket:
    """A new ticket for the renter, added to the caller's transaction."""
    text = secrets.token_urlsafe(_TICKET_BYTES)
    row = StreamTicket(
        id=new_id(),
        token_digest=_digest(text),
        api_key_id=api_key_id,
        principal=principal,
        expires_at=now + ttl,
    )
    session.add(row)
    return Ticket(row.id, text, row.expires_at)


async def redeem(
    sessionmaker: async_sessionmaker[AsyncSession], ticket: str, now: datetime
) -> Holder | None:
    """Use the ticket up; None if it is unknown, used, expired or its key revoked."""
    digest = _digest(ticket)
    async with session_scope(sessionmaker) as session:
        if not await repository.use_ticket(session, digest, now):
            return None
        holder = await repository.ticket_holder(session, digest)
    return Holder(*holder) if holder is not None else None


async def purge_expired(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Delete the tickets past their time, used or not: none of them opens anything now."""
    async with session_scope(sessionmaker) as session:
        return await repository.delete_expired_tickets(session, now)
