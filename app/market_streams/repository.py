"""What the stream process reads from the database, the latest prices it shares there, and
its lease."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LatestPrice, Position, ProcessLease, Subscription


async def traded_markets(session: AsyncSession) -> list[tuple[str, str]]:
    """(symbol, timeframe) of every active subscription."""
    rows = await session.execute(
        select(Subscription.symbol, Subscription.timeframe)
        .where(Subscription.status == "active")
        .distinct()
    )
    return [(symbol, timeframe) for symbol, timeframe in rows.all()]


async def open_position_levels(
    session: AsyncSession,
    sub_ids: Collection[str] | None = None,
    after: str = "",
    limit: int | None = None,
) -> list[tuple[str, str, dict[str, Any], str, Decimal, Decimal | None]]:
    """(subscription, symbol, risk overrides, bot version, average cost, peak) of active
    subscriptions' open positions, by subscription id: of `sub_ids` when given, else every
    one after `after`, `limit` at most. The columns their exit levels need, no entities."""
    query = (
        select(
            Subscription.id,
            Subscription.symbol,
            Subscription.risk,
            Subscription.bot_version_id,
            Position.average_cost,
            Position.peak_price,
        )
        .join(Position, Position.subscription_id == Subscription.id)
        .where(Subscription.status == "active", Position.quantity > 0, Subscription.id > after)
        .order_by(Subscription.id)
        .limit(limit)
    )
    if sub_ids is not None:
        query = query.where(Subscription.id.in_(list(sub_ids)))
    rows = await session.execute(query)
    return [tuple(row) for row in rows.all()]


async def store_prices(
    session: AsyncSession, prices: Mapping[str, tuple[Decimal, datetime]]
) -> None:
    """Each symbol's price and when it was seen, replacing the one stored."""
    values = [{"symbol": s, "price": p, "observed_at": at} for s, (p, at) in prices.items()]
    statement: Any
    if session.get_bind().dialect.name == "sqlite":
        statement = sqlite.insert(LatestPrice)
        statement = statement.on_conflict_do_update(
            index_elements=["symbol"],
            set_={"price": statement.excluded.price, "observed_at": statement.excluded.observed_at},
        )
    else:
        statement = mysql.insert(LatestPrice)
        statement = statement.on_duplicate_key_update(
            price=statement.inserted.price, observed_at=statement.inserted.observed_at
        )
    await session.execute(statement, values)


async def prices_seen_since(
    session: AsyncSession, symbols: Iterable[str], since: datetime
) -> dict[str, Decimal]:
    rows = await session.execute(
        select(LatestPrice.symbol, LatestPrice.price).where(
            LatestPrice.symbol.in_(list(symbols)), LatestPrice.observed_at >= since
        )
    )
    return {symbol: price for symbol, price in rows.all()}


async def lease_of(session: AsyncSession, name: str) -> ProcessLease | None:
    return await session.get(ProcessLease, name)


async def take_lease(
    session: AsyncSession, name: str, holder: str, seen_token: int, now: datetime, until: datetime
) -> bool:
    """Take an expired lease for `holder` under the next token, if nobody took it since it
    was seen under `seen_token`."""
    taken = await session.execute(
        update(ProcessLease)
        .where(
            ProcessLease.name == name,
            ProcessLease.token == seen_token,
            ProcessLease.expires_at <= now,
        )
        .values(holder=holder, token=seen_token + 1, expires_at=until)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


async def renew_lease(
    session: AsyncSession, name: str, holder: str, token: int, until: datetime
) -> bool:
    """Extend the lease if `holder` still holds it under `token`."""
    renewed = await session.execute(
        update(ProcessLease)
        .where(
            ProcessLease.name == name,
            ProcessLease.holder == holder,
            ProcessLease.token == token,
        )
        .values(expires_at=until)
    )
    return bool(renewed.rowcount)  # type: ignore[attr-defined]
