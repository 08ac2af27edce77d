"""The rows a track record is computed from: a bot's subscriptions, their equity, trades and
the bot's decisions. Money is summed by the caller: SQLite stores it as text."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    BotMarketplaceRegistration,
    BotVersion,
    Candle,
    Decision,
    LlmVote,
    PerformanceLog,
    Subscription,
    Trade,
)

# Rows fetched from the server per round trip while an equity history streams.
_EQUITY_BATCH = 1000


async def subscriptions_of(session: AsyncSession, bot_id: str) -> Sequence[Subscription]:
    """Every subscription the bot ever had, whatever its status: a renter who leaves after a
    loss stays in the record."""
    return (
        await session.scalars(
            select(Subscription).where(Subscription.bot_id == bot_id).order_by(Subscription.id)
        )
    ).all()


async def equity_paths(
    session: AsyncSession, bot_id: str
) -> AsyncIterator[tuple[str, list[tuple[datetime, Decimal]]]]:
    """Each subscription's hourly equity, (recorded at, equity) in time order, one subscription
    at a time: streamed, so memory holds one subscription's path rather than the bot's whole
    history."""
    result = await session.stream(
        select(PerformanceLog.subscription_id, PerformanceLog.recorded_at, PerformanceLog.equity)
        .join(Subscription, Subscription.id == PerformanceLog.subscription_id)
        .where(Subscription.bot_id == bot_id)
        .order_by(PerformanceLog.subscription_id, PerformanceLog.recorded_at)
        .execution_options(yield_per=_EQUITY_BATCH)
    )
    current: str | None = None
    path: list[tuple[datetime, Decimal]] = []
    # By partition: iterating an async result row by row costs a context switch per row.
    async for rows in result.partitions():
        for sub_id, recorded_at, equity in rows:
            if sub_id != current:
                if current is not None:
                    yield current, path
                current, path = sub_id, []
            path.append((recorded_at, equity))
    if current is not None:
        yield current, path


async def fills_per_subscription(session: AsyncSession, bot_id: str) -> dict[str, int]:
    """Filled orders per subscription of the bot, for those with any."""
    rows = await session.execute(
        select(Trade.subscription_id, func.count(Trade.id))
        .join(Subscription, Subscription.id == Trade.subscription_id)
        .where(Subscription.bot_id == bot_id, Trade.status == "filled")
        .group_by(Trade.subscription_id)
    )
    return {sub_id: count for sub_id, count in rows}


async def decisions_by_action(session: AsyncSession, bot_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(Decision.action, func.count(Decision.id))
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .where(BotVersion.bot_id == bot_id)
        .group_by(Decision.action)
    )
    return {action: count for action, count in rows}


async def latest_candle(session: AsyncSession, bot_id: str) -> datetime | None:
    return await session.scalar(
        select(func.max(Decision.candle_open_at))
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .where(BotVersion.bot_id == bot_id)
    )


async def llm_costs_since(
    session: AsyncSession, bot_id: str, since: datetime
) -> Sequence[tuple[datetime, Decimal | None]]:
    """(candle, vote cost) of the bot's decisions on candles from `since`; a decision without
    votes (indicator-only) comes once with no cost."""
    rows = await session.execute(
        select(Decision.candle_open_at, LlmVote.cost_usd)
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .outerjoin(LlmVote, LlmVote.decision_id == Decision.id)
        .where(BotVersion.bot_id == bot_id, Decision.candle_open_at >= since)
    )
    return [(candle, cost) for candle, cost in rows]


async def listed_at(session: AsyncSession, bot_id: str) -> datetime | None:
    """When the bot was first listed on a marketplace."""
    return await session.scalar(
        select(func.min(BotMarketplaceRegistration.created_at)).where(
            BotMarketplaceRegistration.bot_id == bot_id
        )
    )


async def decisions_of(session: AsyncSession, bot_id: str) -> Sequence[Any]:
    """(id, version, symbol, timeframe, candle, action, indicator score, rule version, rule
    parameters) of every decision of the bot, in candle order."""
    rows = await session.execute(
        select(
            Decision.id,
            BotVersion.version,
            Decision.symbol,
            Decision.timeframe,
            Decision.candle_open_at,
            Decision.action,
            Decision.indicator_score,
            Decision.rule_version,
            Decision.rule_params,
        )
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .where(BotVersion.bot_id == bot_id)
        .order_by(Decision.candle_open_at, Decision.id)
    )
    return rows.all()


async def votes_of(session: AsyncSession, bot_id: str) -> Sequence[Any]:
    """(decision id, provider, model, action) of every vote on the bot's decisions."""
    rows = await session.execute(
        select(LlmVote.decision_id, LlmVote.provider, LlmVote.model, LlmVote.action)
        .join(Decision, Decision.id == LlmVote.decision_id)
        .join(BotVersion, BotVersion.id == Decision.bot_version_id)
        .where(BotVersion.bot_id == bot_id)
        .order_by(LlmVote.decision_id, LlmVote.seat)
    )
    return rows.all()


async def closes(
    session: AsyncSession, symbol: str, timeframe: str, first: datetime, last: datetime
) -> dict[datetime, Decimal]:
    """Stored candles' closes by open time, from `first` to `last` included."""
    rows = await session.execute(
        select(Candle.open_time, Candle.close).where(
            Candle.symbol == symbol,
            Candle.timeframe == timeframe,
            Candle.open_time >= first,
            Candle.open_time <= last,
        )
    )
    return {open_time: close for open_time, close in rows}


async def decision_fills(session: AsyncSession, bot_id: str) -> Sequence[Any]:
    """(decision id, renter, mode, side, symbol, price, quote quantity, fee, fee asset) of the
    filled orders of the bot's decisions."""
    rows = await session.execute(
        select(
            Trade.decision_id,
            Subscription.user_id,
            Trade.mode,
            Trade.side,
            Trade.symbol,
            Trade.price,
            Trade.quote_quantity,
            Trade.fee,
            Trade.fee_asset,
        )
        .join(Subscription, Subscription.id == Trade.subscription_id)
        .where(
            Subscription.bot_id == bot_id,
            Trade.status == "filled",
            Trade.decision_id.is_not(None),
            Trade.price.is_not(None),
        )
    )
    return rows.all()
