from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import BotVersion, Decision, LlmVote, Position, Subscription, Trade


async def subscription(session: AsyncSession, sub_id: str) -> Subscription | None:
    return await session.get(Subscription, sub_id)


async def trade_by_client_order_id(session: AsyncSession, client_order_id: str) -> Trade | None:
    return await session.scalar(select(Trade).where(Trade.client_order_id == client_order_id))


async def position_for_update(session: AsyncSession, sub: Subscription) -> Position | None:
    return await session.scalar(
        select(Position).where(Position.subscription_id == sub.id).with_for_update()
    )


async def claim_stale(
    session: AsyncSession, trade_id: str, now: datetime, stale_before: datetime
) -> bool:
    """Take over an attempt whose outcome is unknown or whose owner went silent.

    One UPDATE decides between concurrent workers: only one sees a row change.
    """
    result = await session.execute(
        update(Trade)
        .where(
            Trade.id == trade_id,
            or_(
                Trade.status == "unknown",
                (Trade.status == "pending") & (Trade.updated_at < stale_before),
            ),
        )
        .values(status="pending", updated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def decision_for(
    session: AsyncSession, bot_version_id: str, symbol: str, timeframe: str, candle: datetime
) -> Decision | None:
    return await session.scalar(
        select(Decision).where(
            Decision.bot_version_id == bot_version_id,
            Decision.symbol == symbol,
            Decision.timeframe == timeframe,
            Decision.candle_open_at == candle,
        )
    )


async def llm_spend_between(
    session: AsyncSession, bot_id: str, start: datetime, end: datetime
) -> Decimal:
    """What a bot's votes cost for candles opening in [start, end) (summed here: SQLite
    stores money as text)."""
    costs = await session.scalars(
        select(LlmVote.cost_usd)
        .join(Decision, Decision.id == LlmVote.decision_id)
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .where(
            BotVersion.bot_id == bot_id,
            Decision.candle_open_at >= start,
            Decision.candle_open_at < end,
        )
    )
    return sum(costs.all(), Decimal(0))


async def active_groups(session: AsyncSession) -> list[tuple[str, str, str]]:
    """(bot version, symbol, timeframe) with at least one active subscription."""
    rows = await session.execute(
        select(Subscription.bot_version_id, Subscription.symbol, Subscription.timeframe)
        .where(Subscription.status == "active")
        .distinct()
        .order_by(Subscription.bot_version_id, Subscription.symbol, Subscription.timeframe)
    )
    return [(v, s, t) for v, s, t in rows.all()]


async def active_subscription_ids(
    session: AsyncSession, bot_version_id: str, symbol: str, timeframe: str
) -> list[str]:
    ids = await session.scalars(
        select(Subscription.id)
        .where(
            Subscription.status == "active",
            Subscription.bot_version_id == bot_version_id,
            Subscription.symbol == symbol,
            Subscription.timeframe == timeframe,
        )
        .order_by(Subscription.id)
    )
    return list(ids.all())


async def subscriptions_with(session: AsyncSession, status: tuple[str, ...]) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription).where(Subscription.status.in_(status)).order_by(Subscription.id)
    )
    return list(rows.all())


async def filled_buys(session: AsyncSession, sub_id: str) -> int:
    rows = await session.scalars(
        select(Trade.id).where(
            Trade.subscription_id == sub_id, Trade.status == "filled", Trade.side == "BUY"
        )
    )
    return len(rows.all())
