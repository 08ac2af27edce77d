"""Risk checks run before any order of a subscription; each refusal says why.

Limits are the bot's risk defaults overridden by the renter's per-subscription values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.bots.strategy import RiskDefaults
from app.models import PerformanceLog, Position, Subscription, Trade
from app.trading.fills import Side


@dataclass(frozen=True)
class RiskVerdict:
    allowed: bool
    reason: str | None = None
    limit: str | None = None  # which limit refused, for metrics
    pause_subscription: bool = False  # a drawdown breach stops the subscription itself


ALLOWED = RiskVerdict(True)


def limits_for(defaults: RiskDefaults, overrides: dict[str, object]) -> RiskDefaults:
    return RiskDefaults.model_validate({**defaults.model_dump(), **overrides})


def start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Sale:
    realized_pnl: Decimal | None
    at: datetime


@dataclass(frozen=True)
class BuyFacts:
    """What a buy is checked against besides today's trades."""

    held_quantity: Decimal
    last_sale: Sale | None  # the latest filled sell; read only when a cooldown is set
    equity: Sequence[Decimal]  # equity points, oldest first (only the peak and last count)


def verdict(
    limits: RiskDefaults,
    side: Side,
    price: Decimal,
    order_quote: Decimal,
    today: Sequence[Decimal | None],
    buy: BuyFacts | None,
    reference_capital: Decimal,
    now: datetime,
) -> RiskVerdict:
    """The risk decision itself, free of storage, so that live trading and a backtest run the
    same one. `today`: the realized PnL (None for a buy) of each trade filled since
    start_of_day(now); `buy`: required for a buy, unread for a sell."""
    if len(today) >= limits.max_trades_per_day:
        return RiskVerdict(
            False,
            limit="max_trades_per_day",
            reason=f"max trades per day reached ({limits.max_trades_per_day})",
        )
    if side is Side.SELL:
        return ALLOWED  # selling only reduces risk; the executor never sells more than held
    assert buy is not None, "a buy is checked against its exposure"
    held = buy.held_quantity * price
    if limits.max_position_quote is not None and held + order_quote > limits.max_position_quote:
        return RiskVerdict(
            False,
            limit="max_position_quote",
            reason=f"position would exceed {limits.max_position_quote} quote "
            f"({(held + order_quote).quantize(Decimal('0.01'))})",
        )
    lost_today = -sum((pnl for pnl in today if pnl is not None and pnl < 0), Decimal(0))
    if limits.daily_loss_limit_quote is not None and lost_today >= limits.daily_loss_limit_quote:
        return RiskVerdict(
            False,
            limit="daily_loss_limit",
            reason=f"daily loss limit of {limits.daily_loss_limit_quote} reached",
        )
    if limits.cooldown_minutes_after_loss:
        cooldown = timedelta(minutes=limits.cooldown_minutes_after_loss)
        sale = buy.last_sale
        if (
            sale is not None
            and sale.realized_pnl is not None
            and sale.realized_pnl < 0
            and now - sale.at < cooldown
        ):
            return RiskVerdict(
                False,
                limit="cooldown",
                reason=f"cooling down {limits.cooldown_minutes_after_loss} min after a loss",
            )
    drawdown = drawdown_pct(reference_capital, buy.equity)
    if drawdown >= limits.max_drawdown_pct:
        return RiskVerdict(
            False,
            limit="max_drawdown",
            reason=f"max drawdown of {limits.max_drawdown_pct}% breached "
            f"({drawdown.quantize(Decimal('0.01'))}%)",
            pause_subscription=True,
        )
    return ALLOWED


def drawdown_pct(capital: Decimal, equity: Sequence[Decimal]) -> Decimal:
    """How far the latest equity point is below the highest so far (or the capital)."""
    if not equity:
        return Decimal(0)
    peak = max([capital, *equity])
    return (peak - equity[-1]) / peak * 100 if peak > 0 else Decimal(0)


@dataclass(frozen=True)
class ExitLevels:
    """The prices at which a held position is sold to protect it (None: not configured)."""

    stop_loss: Decimal | None
    take_profit: Decimal | None
    trailing_stop: Decimal | None


def exit_levels(limits: RiskDefaults, average_cost: Decimal, peak: Decimal) -> ExitLevels:
    def level(pct: Decimal | None, base: Decimal, direction: int) -> Decimal | None:
        return base * (1 + direction * pct / 100) if pct else None

    return ExitLevels(
        stop_loss=level(limits.stop_loss_pct, average_cost, -1),
        take_profit=level(limits.take_profit_pct, average_cost, 1),
        trailing_stop=level(limits.trailing_stop_pct, peak, -1),
    )


def exit_reason(
    limits: RiskDefaults, average_cost: Decimal, peak: Decimal, price: Decimal
) -> str | None:
    """Why a position is sold at `price`, or None; a stop-loss is named before a take-profit."""
    levels = exit_levels(limits, average_cost, peak)
    if levels.stop_loss is not None and price <= levels.stop_loss:
        return f"stop-loss {limits.stop_loss_pct}% at {price}"
    if levels.take_profit is not None and price >= levels.take_profit:
        return f"take-profit {limits.take_profit_pct}% at {price}"
    if levels.trailing_stop is not None and price <= levels.trailing_stop:
        return f"trailing stop {limits.trailing_stop_pct}% below {peak} at {price}"
    return None


async def check(
    session: AsyncSession,
    sub: Subscription,
    limits: RiskDefaults,
    side: Side,
    price: Decimal,
    reference_capital: Decimal,
    now: datetime,
) -> RiskVerdict:
    trades = (
        await session.scalars(
            select(Trade).where(
                Trade.subscription_id == sub.id,
                Trade.status == "filled",
                Trade.created_at >= start_of_day(now),
            )
        )
    ).all()
    buy = await _buy_facts(session, sub, limits) if side is Side.BUY else None
    return verdict(
        limits,
        side,
        price,
        sub.quote_amount,
        [t.realized_pnl for t in trades],
        buy,
        reference_capital,
        now,
    )


async def _buy_facts(session: AsyncSession, sub: Subscription, limits: RiskDefaults) -> BuyFacts:
    position = await session.scalar(select(Position).where(Position.subscription_id == sub.id))
    last_sale = None
    if limits.cooldown_minutes_after_loss:
        last_sell = await session.scalar(
            select(Trade)
            .where(
                Trade.subscription_id == sub.id,
                Trade.status == "filled",
                Trade.side == Side.SELL.value,
            )
            .order_by(Trade.created_at.desc())
            .limit(1)
        )
        if last_sell is not None:
            last_sale = Sale(last_sell.realized_pnl, last_sell.created_at)
    equity = (
        await session.scalars(
            select(PerformanceLog.equity)
            .where(PerformanceLog.subscription_id == sub.id)
            .order_by(PerformanceLog.recorded_at)
        )
    ).all()
    return BuyFacts(position.quantity if position else Decimal(0), last_sale, equity)
