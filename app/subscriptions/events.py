"""What a subscription's life tells the event outbox: created, paused (by the renter, a risk
limit or bad credentials), resumed, cancelled, expiring, expired.

Written in the transaction that changes the status (app/events/service.py), after the change,
so the event shows the subscription as it now stands.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.events.service import record_for_subscription
from app.events.types import EventType
from app.models import Subscription

_BY_STATUS = {
    "active": EventType.subscription_resumed,
    "paused": EventType.subscription_paused,
    "cancelled": EventType.subscription_cancelled,
    "expiring": EventType.subscription_expiring,
    "expired": EventType.subscription_expired,
}


async def status_changed(
    session: AsyncSession, sub: Subscription, type: EventType | None = None, **data: object
) -> None:
    """`sub` has just taken its status; `type` when the event names the cause (created, a
    risk pause, bad credentials) rather than the status, `data` what the cause adds."""
    await record_for_subscription(
        session,
        type or _BY_STATUS[sub.status],
        sub,
        {
            "status": sub.status,
            "reason": sub.status_reason,
            "bot_id": sub.bot_id,
            "symbol": sub.symbol,
            "timeframe": sub.timeframe,
            "mode": sub.mode,
            "quote_amount": sub.quote_amount,
            "ends_at": sub.ends_at,
            **data,
        },
    )
