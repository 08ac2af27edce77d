from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    Bot,
    BotVersion,
    Decision,
    DecisionClaim,
    LlmVote,
    Position,
    Subscription,
    Trade,
)


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


async def claim_of(
    session: AsyncSession, bot_version_id: str, symbol: str, timeframe: str, candle: datetime
) -> DecisionClaim | None:
    return await session.scalar(
        select(DecisionClaim).where(
            DecisionClaim.bot_version_id == bot_version_id,
            DecisionClaim.symbol == symbol,
            DecisionClaim.timeframe == timeframe,
            DecisionClaim.candle_open_at == candle,
        )
    )


async def add_claim(
    session: AsyncSession,
    bot_version_id: str,
    symbol: str,
    timeframe: str,
    candle: datetime,
    expires_at: datetime,
) -> DecisionClaim:
    """Claim a decision as its first attempt; IntegrityError when another holds it."""
    claim = DecisionClaim(
        bot_version_id=bot_version_id,
        symbol=symbol,
        timeframe=timeframe,
        candle_open_at=candle,
        attempt=1,
        expires_at=expires_at,
        reserved_usd=Decimal(0),
    )
    session.add(claim)
    await session.flush()
    return claim


async def take_over_claim(
    session: AsyncSession, claim_id: str, attempt: int, now: datetime, expires_at: datetime
) -> bool:
    """Take an expired claim as attempt `attempt + 1`, dropping the crashed round's
    reservation. One conditional UPDATE decides between concurrent takers: only one sees a
    row change."""
    result = await session.execute(
        update(DecisionClaim)
        .where(
            DecisionClaim.id == claim_id,
            DecisionClaim.attempt == attempt,
            DecisionClaim.expires_at <= now,
        )
        .values(attempt=attempt + 1, expires_at=expires_at, reserved_usd=Decimal(0))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reserve(
    session: AsyncSession, claim_id: str, attempt: int, amount: Decimal, expires_at: datetime
) -> bool:
    """Set the round's reservation and lease, if the claim is still this attempt's."""
    result = await session.execute(
        update(DecisionClaim)
        .where(DecisionClaim.id == claim_id, DecisionClaim.attempt == attempt)
        .values(reserved_usd=amount, expires_at=expires_at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_claim(session: AsyncSession, claim_id: str, attempt: int) -> bool:
    """Delete the claim, and with it its reservation, if it is still this attempt's."""
    result = await session.execute(
        delete(DecisionClaim).where(DecisionClaim.id == claim_id, DecisionClaim.attempt == attempt)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def lock_bot_budget(session: AsyncSession, bot_id: str) -> None:
    """Serialise the budget reads and writes of one bot's concurrent decisions on MySQL.

    SQLite ignores FOR UPDATE; there the caller's first write serialises all writers.
    """
    await session.execute(select(Bot.id).where(Bot.id == bot_id).with_for_update())


async def reserved_between(
    session: AsyncSession,
    bot_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
    excluding_claim_id: str,
) -> Decimal:
    """What the bot's other rounds in flight for candles opening in [start, end) have
    reserved; an expired claim's reservation no longer counts."""
    amounts = await session.scalars(
        select(DecisionClaim.reserved_usd)
        .join(BotVersion, BotVersion.id == DecisionClaim.bot_version_id)
        .where(
            BotVersion.bot_id == bot_id,
            DecisionClaim.candle_open_at >= start,
            DecisionClaim.candle_open_at < end,
            DecisionClaim.expires_at > now,
            DecisionClaim.id != excluding_claim_id,
        )
    )
    return sum(amounts.all(), Decimal(0))


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
