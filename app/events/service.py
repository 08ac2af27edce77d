"""Writing events: the one way a state change records what happened.

An event is added to the caller's session, so it commits or rolls back with the change it
reports: an event exists if and only if its change committed. The caller's transaction owns
the commit. `data` is stored JSON-safe in one spelling (decimals as plain strings, times as
UTC `...Z`, keys sorted), so every reader renders the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import new_id, utcnow
from app.events.doorbell import ring_after_commit
from app.events.types import EventType
from app.models import Event, Subscription, User


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
) -> Event:
    """Add one event to the caller's transaction; it is written when that transaction flushes.

    Not flushed here: a fan-out records many events, and the commit inserts them in one batch.
    Once that commit is done, the live hubs are told to look (app/events/doorbell.py).
    """
    event = Event(
        id=new_id(),
        type=EventType(type).value,
        occurred_at=utcnow(),
        user_id=user_id,
        principal=principal,
        marketplace_id=marketplace_id,
        subscription_id=subscription_id,
        bot_id=bot_id,
        data=json_safe(data),
    )
    session.add(event)
    ring_after_commit(session)
    return event


def record_for_renter(
    session: AsyncSession,
    type: EventType,
    renter: User,
    data: Mapping[str, object],
    *,
    subscription_id: str | None = None,
    bot_id: str | None = None,
) -> Event:
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
) -> Event:
    """An event about one subscription, addressed to its renter and bot."""
    # From the identity map when the caller has loaded the renter (no query then).
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
