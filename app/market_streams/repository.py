"""What the stream process reads from the database."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Position, Subscription


async def traded_markets(session: AsyncSession) -> list[tuple[str, str]]:
    """(symbol, timeframe) of every active subscription."""
    rows = await session.execute(
        select(Subscription.symbol, Subscription.timeframe)
        .where(Subscription.status == "active")
        .distinct()
    )
    return [(symbol, timeframe) for symbol, timeframe in rows.all()]


async def held_symbols(session: AsyncSession) -> list[str]:
    """The symbols of active subscriptions' open positions: those whose exits are watched."""
    rows = await session.scalars(
        select(Position.symbol)
        .join(Subscription, Subscription.id == Position.subscription_id)
        .where(Subscription.status == "active", Position.quantity > 0)
        .distinct()
    )
    return list(rows.all())
