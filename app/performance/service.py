"""A subscription's performance: its results from its recorded trades, position and hourly
equity points, as the API presents them."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.settings import Settings
from app.models import PerformanceLog, Subscription
from app.performance import figures, repository
from app.performance.figures import FIGURE_PLACES, max_drawdown_pct
from app.performance.schemas import PerformanceOut
from app.subscriptions import repository as subscriptions
from app.subscriptions.rules import reference_capital

# The equity points are hourly.
_PERIODS_PER_YEAR = figures.periods_per_year("1h")


def sharpe(equity: Sequence[Decimal]) -> Decimal | None:
    """Annualised Sharpe ratio of hourly returns (risk-free rate 0); None under 3 points."""
    ratio = figures.sharpe(figures.simple_returns(equity), _PERIODS_PER_YEAR)
    return None if ratio is None else ratio.quantize(FIGURE_PLACES)


async def performance(
    session: AsyncSession, sub: Subscription, settings: Settings
) -> PerformanceOut:
    position = await subscriptions.position_of(session, sub.id)
    points: Sequence[PerformanceLog] = await subscriptions.equity_points(session, sub.id)
    sells = await repository.realized_pnls(session, sub.id)
    wins = sum(1 for pnl in sells if pnl is not None and pnl > 0)
    losses = sum(1 for pnl in sells if pnl is not None and pnl < 0)
    equity = [p.equity for p in points]
    latest = points[-1] if points else None
    return PerformanceOut(
        # Before the first hourly point: the capital plus what has been realized so far.
        equity=latest.equity
        if latest
        else reference_capital(sub, settings) + (position.realized_pnl if position else 0),
        realized_pnl=position.realized_pnl if position else Decimal(0),
        unrealized_pnl=latest.unrealized_pnl if latest else Decimal(0),
        win_rate=(Decimal(wins) / len(sells)).quantize(FIGURE_PLACES) if sells else None,
        max_drawdown_pct=max_drawdown_pct(equity),
        sharpe=sharpe(equity),
        trade_count=await subscriptions.filled_trade_count(session, sub.id),
        winning_trades=wins,
        losing_trades=losses,
    )
