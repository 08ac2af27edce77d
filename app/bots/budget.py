"""A bot's daily LLM budget, shared by its live decisions and its `ask` backtests.

The budget's day is a UTC day. Against it count the votes of the bot's decisions for candles
opening that day, what its decision rounds in flight have reserved on their claims (until a
claim's lease runs out), and the `ask` backtests made that day: a backtest's reservation while
it may still ask, its real cost once it ended. A budget of 0 asks nobody. A caller takes
`lock` before `overdraft`, so that one bot's concurrent checks and charges are serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bots import metrics
from app.events import repository as events
from app.events.service import record
from app.events.types import EventType
from app.models import Backtest, Bot, BotVersion, Decision, DecisionClaim, LlmVote

USD_PLACES = Decimal("0.0001")


async def lock(session: AsyncSession, bot_id: str) -> None:
    """Serialise the budget reads and writes of one bot's concurrent decisions on MySQL.

    SQLite ignores FOR UPDATE; there the caller's first write serialises all writers.
    """
    await session.execute(select(Bot.id).where(Bot.id == bot_id).with_for_update())


@dataclass(frozen=True)
class Overdraft:
    """What the bot's day already holds, when the amount asked for does not fit."""

    spent: Decimal
    reserved: Decimal  # by its decision rounds in flight


async def overdraft(
    session: AsyncSession,
    bot_id: str,
    day_of: datetime,
    now: datetime,
    amount: Decimal,
    daily_usd: Decimal,
    *,
    excluding_claim_id: str = "",
) -> Overdraft | None:
    """None when `amount` more fits the bot's `daily_usd` for the UTC day of `day_of`;
    otherwise what the day already holds. A budget of 0 holds nothing, not even a free
    model's round: it means no LLM calls. `excluding_claim_id`: the caller's own round,
    whose reservation is the `amount`."""
    day = day_of.replace(hour=0, minute=0, second=0, microsecond=0)
    end = day + timedelta(days=1)
    spent = await spent_between(session, bot_id, day, end)
    reserved = await _reserved_between(session, bot_id, day, end, now, excluding_claim_id)
    if daily_usd == 0 or spent + reserved + amount > daily_usd:
        return Overdraft(spent, reserved)
    return None


async def _reserved_between(
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


async def spent_between(
    session: AsyncSession, bot_id: str, start: datetime, end: datetime
) -> Decimal:
    """What a bot's votes cost for candles opening in [start, end), plus what its `ask`
    backtests made in [start, end) take of the same budget (summed here: SQLite stores money
    as text)."""
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
    return sum(costs.all(), Decimal(0)) + await _backtest_charges(session, bot_id, start, end)


async def spent_per_bot(
    session: AsyncSession, bot_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, Decimal]:
    """`spent_between` of many bots at once, for pages that show it: the votes are summed by
    the database, exactly on MariaDB (SQLite sums its decimal text as floats, far inside
    USD_PLACES); the budget's own checks use `spent_between`, exact everywhere."""
    rows = await session.execute(
        select(BotVersion.bot_id, func.sum(LlmVote.cost_usd))
        .join(Decision, Decision.bot_version_id == BotVersion.id)
        .join(LlmVote, LlmVote.decision_id == Decision.id)
        .where(
            BotVersion.bot_id.in_(bot_ids),
            Decision.candle_open_at >= start,
            Decision.candle_open_at < end,
        )
        .group_by(BotVersion.bot_id)
    )
    spent = {bot_id: Decimal(str(total or 0)) for bot_id, total in rows.all()}
    runs = await session.execute(
        select(
            Backtest.bot_id, Backtest.status, Backtest.llm_reserved_usd, Backtest.llm_cost_usd
        ).where(
            Backtest.bot_id.in_(bot_ids),
            Backtest.llm == "ask",
            Backtest.created_at >= start,
            Backtest.created_at < end,
        )
    )
    for bot_id, status, reserved, cost in runs.all():
        spent[bot_id] = spent.get(bot_id, Decimal(0)) + _charge(status, reserved, cost)
    return spent


def _charge(status: str, reserved: Decimal, cost: Decimal) -> Decimal:
    """An `ask` backtest counts its reservation while it may still ask, its real cost once
    it ended."""
    return reserved if status in ("queued", "running") else cost


async def _backtest_charges(
    session: AsyncSession, bot_id: str, start: datetime, end: datetime
) -> Decimal:
    rows = await session.execute(
        select(Backtest.status, Backtest.llm_reserved_usd, Backtest.llm_cost_usd).where(
            Backtest.bot_id == bot_id,
            Backtest.llm == "ask",
            Backtest.created_at >= start,
            Backtest.created_at < end,
        )
    )
    return sum((_charge(*row) for row in rows.all()), Decimal(0))


async def record_exhausted(session: AsyncSession, bot_id: str, decision: Decision) -> None:
    """Tell once per bot and budget day that its decisions fall back to indicators; the
    caller holds `lock`, so two of the bot's decisions cannot both find it untold."""
    day = decision.candle_open_at.date().isoformat()
    if not await events.exhausted_recorded(session, bot_id, day):
        metrics.BUDGET_EXHAUSTED.inc()
        record(
            session,
            EventType.budget_exhausted,
            bot_id=bot_id,
            data={
                "bot_id": bot_id,
                "day": day,
                "decision_id": decision.id,
                "reason": decision.fallback_reason,
            },
        )
