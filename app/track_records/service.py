"""A bot's track record: what its renters achieved per mode, as counts per band so that no
renter's figure can be derived (docs/track-records.md), its decisions, its LLM spend, and its
latest backtest per version."""

from __future__ import annotations

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
from app.models import Bot
from app.performance.figures import max_drawdown_pct
from app.subscriptions.rules import reference_capital
from app.subscriptions.schemas import Mode
from app.track_records import repository
from app.track_records.bands import DRAWDOWN_PCT, FILLS, RETURN_PCT, Scale, bands
from app.track_records.schemas import (
    BacktestSummary,
    CountBand,
    DailyLlmCost,
    DecisionCounts,
    ModeRecord,
    ModeRecords,
    PercentBand,
    TrackRecordOut,
)

LLM_COST_DAYS = 30


@dataclass
class _Renter:
    """One renter's results in one mode, over their subscriptions in it that have a fill."""

    capital: Decimal = Decimal(0)
    latest: Decimal = Decimal(0)
    max_drawdown_pct: Decimal = Decimal(0)
    fills: int = 0

    def add(self, capital: Decimal, equity: Sequence[Decimal], fills: int) -> None:
        self.capital += capital
        self.latest += equity[-1] if equity else capital
        self.max_drawdown_pct = max(self.max_drawdown_pct, max_drawdown_pct([capital, *equity]))
        self.fills += fills

    @property
    def return_pct(self) -> Decimal:
        return (self.latest - self.capital) / self.capital * 100


def _percent_bands(values: Sequence[Decimal], scale: Scale) -> list[PercentBand]:
    return [
        PercentBand(low=band.low, high=band.high, renters=band.renters)
        for band in bands(values, scale)
    ]


def _count_bands(values: Sequence[int], scale: Scale) -> list[CountBand]:
    return [
        CountBand(
            low=int(band.low or 0),
            high=None if band.high is None else int(band.high),
            renters=band.renters,
        )
        for band in bands([Decimal(value) for value in values], scale)
    ]


def _mode_record(renters: Sequence[_Renter], minimum: int) -> ModeRecord:
    if len(renters) < minimum:
        return ModeRecord(
            suppressed=True, renters=None, return_pct=None, max_drawdown_pct=None, fills=None
        )
    return ModeRecord(
        suppressed=False,
        renters=len(renters),
        return_pct=_percent_bands([r.return_pct for r in renters], RETURN_PCT),
        max_drawdown_pct=_percent_bands([r.max_drawdown_pct for r in renters], DRAWDOWN_PCT),
        fills=_count_bands([r.fills for r in renters], FILLS),
    )


async def _renters_by_mode(
    session: AsyncSession, bot_id: str, settings: Settings
) -> dict[str, list[_Renter]]:
    """Each mode's renters with a fill in it, with their results."""
    fills = await repository.fills_per_subscription(session, bot_id)
    traded = {sub.id: sub for sub in await repository.subscriptions_of(session, bot_id)}
    traded = {sub_id: sub for sub_id, sub in traded.items() if fills.get(sub_id)}
    renters: dict[tuple[str, str], _Renter] = defaultdict(_Renter)
    charted: set[str] = set()
    async for sub_id, equity in repository.equity_paths(session, bot_id):
        if sub_id in traded:
            sub = traded[sub_id]
            renters[sub.mode, sub.user_id].add(
                reference_capital(sub, settings), equity, fills[sub_id]
            )
            charted.add(sub_id)
    for sub_id, sub in traded.items():
        if sub_id not in charted:
            renters[sub.mode, sub.user_id].add(reference_capital(sub, settings), [], fills[sub_id])
    by_mode: dict[str, list[_Renter]] = defaultdict(list)
    for (mode, _), renter in renters.items():
        by_mode[mode].append(renter)
    return by_mode


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
    renters = await _renters_by_mode(session, bot_id, settings)
    decisions = await repository.decisions_by_action(session, bot_id)
    return TrackRecordOut(
        bot_id=bot_id,
        modes=ModeRecords(
            **{
                mode.value: _mode_record(renters[mode.value], settings.track_record_min_renters)
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
