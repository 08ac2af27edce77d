"""A bot's track record: what its renters' subscriptions achieved per mode, its decisions, its
LLM spend, aggregated so that no renter can be picked out, and its latest backtest per version."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests import repository as backtests
from app.bots import repository as bots
from app.core.errors import NotFound
from app.core.settings import Settings
from app.models import Bot, Subscription
from app.performance.figures import max_drawdown_pct
from app.subscriptions.rules import reference_capital
from app.subscriptions.schemas import Mode
from app.track_records import repository
from app.track_records.schemas import (
    BacktestSummary,
    DailyLlmCost,
    DecisionCounts,
    ModeRecord,
    ModeRecords,
    ReturnQuartiles,
    TrackRecordOut,
)

# Fewer renters than this and their figures would come close to describing each one.
MIN_RENTERS = 3
LLM_COST_DAYS = 30
_PERCENT = Decimal("0.0001")


@dataclass(frozen=True)
class _Result:
    return_pct: Decimal
    max_drawdown_pct: Decimal


def _result(capital: Decimal, equity: Sequence[Decimal]) -> _Result:
    """One subscription's return and drawdown since it started with `capital`."""
    latest = equity[-1] if equity else capital
    return _Result(
        return_pct=(latest - capital) / capital * 100,
        max_drawdown_pct=max_drawdown_pct([capital, *equity]),
    )


def _mode_record(
    subs: Sequence[Subscription], results: dict[str, _Result], trade_count: int
) -> ModeRecord:
    renters = len({sub.user_id for sub in subs})
    if renters < MIN_RENTERS:
        return ModeRecord(
            suppressed=True,
            renters=None,
            return_pct=None,
            max_drawdown_pct_median=None,
            trade_count=None,
        )
    returns = [results[sub.id].return_pct for sub in subs]
    p25, median, p75 = statistics.quantiles(returns, n=4, method="inclusive")
    drawdowns = [results[sub.id].max_drawdown_pct for sub in subs]
    return ModeRecord(
        suppressed=False,
        renters=renters,
        return_pct=ReturnQuartiles(
            p25=p25.quantize(_PERCENT), median=median.quantize(_PERCENT), p75=p75.quantize(_PERCENT)
        ),
        max_drawdown_pct_median=statistics.median(drawdowns).quantize(_PERCENT),
        trade_count=trade_count,
    )


async def _daily_llm_cost(session: AsyncSession, bot_id: str) -> list[DailyLlmCost]:
    # The window ends at the latest decision, not at the time of the request: two identical
    # requests get the same body.
    latest = await repository.latest_candle(session, bot_id)
    if latest is None:
        return []
    first_day = latest.date() - timedelta(days=LLM_COST_DAYS - 1)
    since = datetime.combine(first_day, time(), tzinfo=UTC)
    per_day: dict[date, Decimal] = defaultdict(Decimal)
    for candle, cost in await repository.llm_costs_since(session, bot_id, since):
        per_day[candle.date()] += cost or 0
    return [DailyLlmCost(day=day, cost_usd=per_day[day]) for day in sorted(per_day)]


async def _backtest_summaries(session: AsyncSession, bot: Bot) -> list[BacktestSummary]:
    return [
        BacktestSummary(
            version=version,
            symbol=symbol,
            timeframe=timeframe,
            start=start,
            end=end,
            llm=llm,
            total_return=Decimal(metrics["total_return"]),
            buy_and_hold_return=Decimal(metrics["buy_and_hold_return"]),
            max_drawdown=Decimal(metrics["max_drawdown"]),
            sharpe=metrics["sharpe"],
            trades=metrics["trades"],
        )
        for version, symbol, timeframe, start, end, llm, metrics in (
            await backtests.latest_public_results(session, bot.id, bot.owner_user_id)
        )
    ]


async def track_record(session: AsyncSession, bot_id: str, settings: Settings) -> TrackRecordOut:
    bot = await bots.get(session, bot_id)
    if bot is None:
        raise NotFound("bot")
    subs = await repository.subscriptions_of(session, bot_id)
    capitals = {sub.id: reference_capital(sub, settings) for sub in subs}
    results = {sub_id: _result(capital, []) for sub_id, capital in capitals.items()}
    async for sub_id, equity in repository.equity_paths(session, bot_id):
        results[sub_id] = _result(capitals[sub_id], equity)
    trades = await repository.filled_trades_by_mode(session, bot_id)
    by_mode: dict[str, list[Subscription]] = defaultdict(list)
    for sub in subs:
        by_mode[sub.mode].append(sub)
    decisions = await repository.decisions_by_action(session, bot_id)
    return TrackRecordOut(
        bot_id=bot_id,
        modes=ModeRecords(
            **{
                mode.value: _mode_record(by_mode[mode.value], results, trades.get(mode.value, 0))
                for mode in Mode
            }
        ),
        decisions=DecisionCounts(
            BUY=decisions.get("BUY", 0),
            SELL=decisions.get("SELL", 0),
            HOLD=decisions.get("HOLD", 0),
        ),
        llm_cost_per_day=await _daily_llm_cost(session, bot_id),
        backtests=await _backtest_summaries(session, bot),
    )
