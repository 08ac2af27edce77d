"""Writing events: the one way a state change records what happened.

An event joins the caller's transaction, so it commits or rolls back with the change it
reports: an event exists if and only if its change committed. The caller's transaction owns
the commit. `data` is stored JSON-safe in one spelling (decimals as plain strings, times as
UTC `...Z`, keys sorted), so every reader renders the same bytes.

The events a transaction records wait in its session as plain rows and are inserted by one
multi-row INSERT as it commits, after its last flush: a tick's fills record tens of
thousands of events, and an ORM object each (its instrumented construction, its unit-of-work
bookkeeping) cost more than the fill itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import event, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from app.core.db import new_id, utcnow
from app.events.doorbell import ring_after_commit
from app.events.types import EventType
from app.models import Event, Subscription, User

_PENDING = "botmarket.events.pending"


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event recorded in a transaction: written when that transaction commits."""

    id: str
    occurred_at: datetime


def record(
    session: AsyncSession,
    type: EventType,
    *,
    data: Mapping[str, object],
    user_id: str | None = None,
    principal: str | None = None,
    marketplace_id: str | None = None,
    subscription_id: str | None = None,
    bot_id: str | None = None,
) -> Recorded:
    """Have one event written with the caller's transaction; once that commits, the live
    hubs are told to look (app/events/doorbell.py)."""
    recorded = Recorded(new_id(), utcnow())
    sync = session.sync_session
    if sync.get_transaction() is None:
        # Begun now, as a first statement would: a rollback before any then still ends a
        # transaction, and drops what it recorded.
        sync.begin()
    sync.info.setdefault(_PENDING, []).append(
        {
            "id": recorded.id,
            "type": EventType(type).value,
            "occurred_at": recorded.occurred_at,
            "user_id": user_id,
            "principal": principal,
            "marketplace_id": marketplace_id,
            "subscription_id": subscription_id,
            "bot_id": bot_id,
            "data": json_safe(data),
        }
    )
    ring_after_commit(session)
    return recorded


async def write_recorded(session: AsyncSession) -> None:
    """Insert the events this transaction has recorded so far, before its commit would (for
    a caller that must see them in the table while the transaction is still open)."""
    await session.run_sync(_write_recorded)


@event.listens_for(Session, "before_commit")
def _write_recorded(sync: Session) -> None:
    rows = sync.info.pop(_PENDING, None)
    if rows:
        # What the events refer to (a renter made in this transaction) is written first.
        sync.flush()
        # On the connection, as a Core statement: the ORM's bulk path would look at each row.
        sync.connection().execute(insert(Event), rows)


@event.listens_for(Session, "after_transaction_end")
def _forget_recorded(sync: Session, transaction: SessionTransaction) -> None:
    # A rollback of the whole transaction drops what it recorded; the next one starts empty.
    if transaction.parent is None:
        sync.info.pop(_PENDING, None)


def record_for_renter(
    session: AsyncSession,
    type: EventType,
    renter: User,
    data: Mapping[str, object],
    *,
    subscription_id: str | None = None,
    bot_id: str | None = None,
) -> Recorded:
    """An event addressed to a renter: read by the renter's marketplace, naming its principal."""
    return record(
        session,
        type,
        data=data,
        user_id=renter.id,
        principal=renter.principal,
        marketplace_id=renter.marketplace_id,
        subscription_id=subscription_id,
        bot_id=bot_id,
    )


async def record_for_subscription(
    session: AsyncSession, type: EventType, subscription: Subscription, data: Mapping[str, object]
) -> Recorded:
    """An event about one subscription, addressed to its renter and bot."""
    # From the identity map when the caller has loaded the renter: looked up there directly,
    # since `session.get` crosses into the sync session and back even for an object it holds,
    # and a fan-out asks once per event. One a rollback expired is read again, as `get` would.
    user = session.identity_map.get(session.identity_key(User, subscription.user_id))
    if user is None or inspect(user).expired:
        user = await session.get(User, subscription.user_id)
    assert user is not None, "a subscription's user is deleted with it"
    return record_for_renter(
        session, type, user, data, subscription_id=subscription.id, bot_id=subscription.bot_id
    )


def json_safe(value: object) -> Any:
    """`value` as JSON types: Decimal → plain decimal string, datetime → UTC `...Z`, enums →
    their value, mappings with sorted string keys. Anything else is a TypeError, at the writer
    rather than in a reader's response."""
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{value} has no JSON form")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"{value} has no JSON form")
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("a naive datetime has no UTC form")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Enum):
        return json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    raise TypeError(f"{type(value).__name__} is not JSON-safe event data")
