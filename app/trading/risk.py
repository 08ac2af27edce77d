"""Risk checks run before any order of a subscription; each refusal says why.

Limits are the bot's risk defaults overridden by the renter's per-subscription values.
"""

from __future__ import annotations

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


async def check(
    session: AsyncSession,
    sub: Subscription,
    limits: RiskDefaults,
    side: Side,
    price: Decimal,
    reference_capital: Decimal,
    now: datetime,
) -> RiskVerdict:
    today = start_of_day(now)
    trades = (
        await session.scalars(
            select(Trade).where(
                Trade.subscription_id == sub.id,
                Trade.status == "filled",
                Trade.created_at >= today,
            )
        )
    ).all()
    if len(trades) >= limits.max_trades_per_day:
        return RiskVerdict(
            False,
            limit="max_trades_per_day",
            reason=f"max trades per day reached ({limits.max_trades_per_day})",
        )
    if side is Side.SELL:
        return ALLOWED  # selling only reduces risk; the executor never sells more than held
    position = await session.scalar(select(Position).where(Position.subscription_id == sub.id))
    held = position.quantity * price if position else Decimal(0)
    if (
        limits.max_position_quote is not None
        and held + sub.quote_amount > limits.max_position_quote
    ):
        return RiskVerdict(
            False,
            limit="max_position_quote",
            reason=f"position would exceed {limits.max_position_quote} quote "
            f"({(held + sub.quote_amount).quantize(Decimal('0.01'))})",
        )
    lost_today = -sum(
        (t.realized_pnl for t in trades if t.realized_pnl is not None and t.realized_pnl < 0),
        Decimal(0),
    )
    if limits.daily_loss_limit_quote is not None and lost_today >= limits.daily_loss_limit_quote:
        return RiskVerdict(
            False,
            limit="daily_loss_limit",
            reason=f"daily loss limit of {limits.daily_loss_limit_quote} reached",
        )
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
        cooldown = timedelta(minutes=limits.cooldown_minutes_after_loss)
        if (
            last_sell is not None
            and last_sell.realized_pnl is not None
            and last_sell.realized_pnl < 0
            and now - last_sell.created_at < cooldown
        ):
            return RiskVerdict(
                False,
                limit="cooldown",
                reason=f"cooling down {limits.cooldown_minutes_after_loss} min after a loss",
            )
    drawdown = await _drawdown_pct(session, sub, reference_capital)
    if drawdown >= limits.max_drawdown_pct:
        return RiskVerdict(
            False,
            limit="max_drawdown",
            reason=f"max drawdown of {limits.max_drawdown_pct}% breached "
            f"({drawdown.quantize(Decimal('0.01'))}%)",
            pause_subscription=True,
        )
    return ALLOWED


async def _drawdown_pct(session: AsyncSession, sub: Subscription, capital: Decimal) -> Decimal:
    equity = (
        await session.scalars(
            select(PerformanceLog.equity)
            .where(PerformanceLog.subscription_id == sub.id)
            .order_by(PerformanceLog.recorded_at)
        )
    ).all()
    if not equity:
        return Decimal(0)
    peak = max([capital, *equity])
    return (peak - equity[-1]) / peak * 100 if peak > 0 else Decimal(0)
