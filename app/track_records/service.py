"""A bot's track record: what its renters achieved per mode, as counts per band so that no
renter's figure can be derived (docs/track-records.md), its decisions, its LLM spend, and its
latest backtest per version."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from statistics import median

from sqlalchemy.ext.asyncio import AsyncSession

from app.backtests import repository as backtests
from app.bots import repository as bots
from app.core.errors import NotFound
from app.core.settings import Settings
from app.models import Bot, Subscription
from app.performance.figures import FIGURE_PLACES, max_drawdown_pct
from app.subscriptions.rules import reference_capital
from app.subscriptions.schemas import Mode
from app.track_records import gap, quality, repository
from app.track_records.bands import DRAWDOWN_PCT, FILLS, RETURN_PCT, Scale, bands
from app.track_records.schemas import (
    BacktestSummary,
    CountBand,
    DailyLlmCost,
    DecisionCounts,
    DecisionQuality,
    GapFigure,
    ModeRecord,
    ModeRecords,
    PaperToLiveGap,
    PercentBand,
    QuantileBand,
    TrackRecordOut,
    VersionQuality,
    VersionWindow,
    VoterQuality,
    VoterWindow,
)
from app.track_records.schemas import Calls as CallsOut
from app.trading.market_data import interval_ms

# The recent window of LLM spend and decision quality.
RECENT_DAYS = 30


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


async def _traded(
    session: AsyncSession, bot_id: str
) -> tuple[dict[str, Subscription], dict[str, int]]:
    """The bot's subscriptions with a fill, by id, and their fills: whose results count."""
    fills = await repository.fills_per_subscription(session, bot_id)
    subs = await repository.subscriptions_of(session, bot_id)
    return {sub.id: sub for sub in subs if fills.get(sub.id)}, fills


async def _renters_by_mode(
    session: AsyncSession, bot_id: str, settings: Settings
) -> dict[str, list[_Renter]]:
    """Each mode's renters with a fill in it, with their results."""
    traded, fills = await _traded(session, bot_id)
    renters: dict[tuple[str, str], _Renter] = defaultdict(_Renter)
    charted: set[str] = set()
    async for sub_id, path in repository.equity_paths(session, bot_id):
        if sub_id in traded:
            sub = traded[sub_id]
            renters[sub.mode, sub.user_id].add(
                reference_capital(sub, settings), [equity for _, equity in path], fills[sub_id]
            )
            charted.add(sub_id)
    for sub_id, sub in traded.items():
        if sub_id not in charted:
            renters[sub.mode, sub.user_id].add(reference_capital(sub, settings), [], fills[sub_id])
    by_mode: dict[str, list[_Renter]] = defaultdict(list)
    for (mode, _), renter in renters.items():
        by_mode[mode].append(renter)
    return by_mode


async def median_equity_by_mode(
    session: AsyncSession, bot_id: str, settings: Settings
) -> dict[str, list[tuple[datetime, Decimal]]]:
    """For each mode the track record shows (TRACK_RECORD_MIN_RENTERS renters with a fill in
    it, or more), its renters' median equity over time, in percent of their starting capital
    (renters rent with different amounts): at each hourly snapshot that at least that many of
    them have, so that no point comes closer to one renter than the record's bands do."""
    minimum = settings.track_record_min_renters
    traded, _ = await _traded(session, bot_id)
    renters: dict[str, set[str]] = defaultdict(set)
    for rented in traded.values():
        renters[rented.mode].add(rented.user_id)
    shown = {mode for mode, users in renters.items() if len(users) >= minimum}
    # mode -> snapshot time -> renter -> [their subscriptions' equity, their capital]
    held: dict[str, dict[datetime, dict[str, list[Decimal]]]] = {
        mode: defaultdict(lambda: defaultdict(lambda: [Decimal(0), Decimal(0)])) for mode in shown
    }
    async for sub_id, path in repository.equity_paths(session, bot_id):
        sub = traded.get(sub_id)
        if sub is None or sub.mode not in shown:
            continue
        capital = reference_capital(sub, settings)
        for recorded_at, equity in path:
            sums = held[sub.mode][recorded_at][sub.user_id]
            sums[0] += equity
            sums[1] += capital
    return {
        mode: [
            (at, median(equity / capital * 100 for equity, capital in by_renter.values()))
            for at, by_renter in sorted(by_time.items())
            if len(by_renter) >= minimum
        ]
        for mode, by_time in held.items()
    }


async def _recent_since(session: AsyncSession, bot_id: str) -> datetime | None:
    """The start of the 30 UTC days that end on the day of the bot's latest decision: the
    window ends there, not at the time of the request, so two identical requests get the same
    body."""
    latest = await repository.latest_candle(session, bot_id)
    if latest is None:
        return None
    first_day = latest.date() - timedelta(days=RECENT_DAYS - 1)
    return datetime.combine(first_day, time(), tzinfo=UTC)


async def _decided(session: AsyncSession, bot_id: str) -> list[tuple[datetime, quality.Decided]]:
    """The bot's decisions by candle, each with its votes and the stored closes of its candle
    and the next."""
    votes: dict[str, list[quality.Vote]] = defaultdict(list)
    for decision_id, provider, model, action in await repository.votes_of(session, bot_id):
        votes[decision_id].append(quality.Vote(provider, model, action))
    rows = await repository.decisions_of(session, bot_id)
    spans: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for row in rows:
        spans[row.symbol, row.timeframe].append(row.candle_open_at)
    closes = {
        (symbol, timeframe): await repository.closes(
            session, symbol, timeframe, min(candles), max(candles) + _interval(timeframe)
        )
        for (symbol, timeframe), candles in spans.items()
    }
    decided = []
    for row in rows:
        stored = closes[row.symbol, row.timeframe]
        decided.append(
            (
                row.candle_open_at,
                quality.Decided(
                    version=row.version,
                    action=row.action,
                    indicators_action=quality.indicators_action(
                        row.rule_version, row.rule_params, row.indicator_score
                    ),
                    votes=tuple(votes[row.id]),
                    close=stored.get(row.candle_open_at),
                    next_close=stored.get(row.candle_open_at + _interval(row.timeframe)),
                ),
            )
        )
    return decided


def _interval(timeframe: str) -> timedelta:
    return timedelta(milliseconds=interval_ms(timeframe))


def _percent(fraction: Decimal) -> Decimal:
    return (fraction * 100).quantize(FIGURE_PLACES)


def _calls(calls: quality.Calls) -> CallsOut:
    return CallsOut(
        scored=calls.scored,
        hit_rate=calls.hit_rate,
        holds=calls.holds,
        directional_return_pct=_percent(calls.directional_return),
    )


def _version_window(figures: quality.VersionFigures | None) -> VersionWindow:
    figures = figures or quality.VersionFigures()
    return VersionWindow(
        decisions=figures.decisions,
        abstention_rate=figures.panel.abstention_rate,
        agreement_rate=figures.panel.agreement_rate,
        ensemble=_calls(figures.ensemble),
        indicators_only=_calls(figures.indicators_only),
        buy_and_hold_return_pct=_percent(figures.buy_and_hold_return),
    )


def _voter_window(figures: quality.VoterFigures | None) -> VoterWindow:
    figures = figures or quality.VoterFigures()
    return VoterWindow(
        decisions=figures.decisions,
        abstention_rate=figures.panel.abstention_rate,
        agreement_rate=figures.panel.agreement_rate,
        calls=_calls(figures.calls),
    )


async def decision_quality(session: AsyncSession, bot_id: str) -> DecisionQuality:
    """The quality of the bot's calls per version and per voter (the track record's, and the
    console's bot page)."""
    decided = await _decided(session, bot_id)
    recent_since = await _recent_since(session, bot_id)
    listed = await repository.listed_at(session, bot_id)
    recent = [d for candle, d in decided if recent_since and candle >= recent_since]
    listed_on = [d for candle, d in decided if listed is None or candle >= listed]
    versions = (quality.by_version(recent), quality.by_version(listed_on))
    voters = (quality.by_voter(recent), quality.by_voter(listed_on))
    return DecisionQuality(
        versions=[
            VersionQuality(
                version=version,
                last_30_days=_version_window(versions[0].get(version)),
                since_listing=_version_window(versions[1].get(version)),
            )
            for version in sorted(versions[0].keys() | versions[1].keys())
        ],
        voters=[
            VoterQuality(
                provider=provider,
                model=model,
                last_30_days=_voter_window(voters[0].get((provider, model))),
                since_listing=_voter_window(voters[1].get((provider, model))),
            )
            for provider, model in sorted(voters[0].keys() | voters[1].keys())
        ],
    )


def _gap_figure(values: list[Decimal], scale: Scale) -> GapFigure:
    median, p90 = (gap.quantile_band(values, q, scale) for q in (Decimal("0.5"), Decimal("0.9")))
    return GapFigure(
        median=QuantileBand(low=median[0], high=median[1]),
        p90=QuantileBand(low=p90[0], high=p90[1]),
    )


async def _paper_to_live(session: AsyncSession, bot_id: str, minimum: int) -> PaperToLiveGap:
    fills = [
        gap.Fill(
            decision_id=row.decision_id,
            renter=row.user_id,
            live=row.mode != Mode.paper,
            side=row.side,
            symbol=row.symbol,
            price=row.price,
            quote_quantity=row.quote_quantity or Decimal(0),
            fee=row.fee or Decimal(0),
            fee_asset=row.fee_asset,
        )
        for row in await repository.decision_fills(session, bot_id)
    ]
    gaps = gap.gaps(fills)
    if gaps.renters < minimum:
        return PaperToLiveGap(suppressed=True, price_bps=None, fee_bps=None)
    return PaperToLiveGap(
        suppressed=False,
        price_bps=_gap_figure(gaps.price_bps, gap.PRICE_BPS),
        fee_bps=_gap_figure(gaps.fee_bps, gap.FEE_BPS) if gaps.fee_bps else None,
    )


async def _daily_llm_cost(session: AsyncSession, bot_id: str) -> list[DailyLlmCost]:
    # The window ends at the latest decision, not at the time of the request: two identical
    # requests get the same body.
    since = await _recent_since(session, bot_id)
    if since is None:
        return []
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
        quality=await decision_quality(session, bot_id),
        paper_to_live=await _paper_to_live(session, bot_id, settings.track_record_min_renters),
        llm_cost_per_day=await _daily_llm_cost(session, bot_id),
        backtests=await _backtest_summaries(session, bot),
    )
