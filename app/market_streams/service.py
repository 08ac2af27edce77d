"""Which streams the deployment needs, and the exit levels they are checked against."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.bots.strategy import Strategy
from app.market_streams import repository
from app.market_streams.names import kline_stream, price_stream
from app.trading import repository as trading
from app.trading import risk
from app.trading.risk import ExitLevels


async def wanted_streams(session: AsyncSession) -> set[str]:
    """The kline stream of every traded (symbol, timeframe), the price stream of every held
    symbol."""
    klines = {kline_stream(s, t) for s, t in await repository.traded_markets(session)}
    return klines | {price_stream(s) for s in await trading.held_symbols(session)}


async def exit_levels_of_open_positions(
    session: AsyncSession,
) -> list[tuple[str, str, ExitLevels, Decimal | None]]:
    """(subscription, symbol, exit levels, trailing stop percent) of every active
    subscription's open position."""
    levels = []
    for sub, position, strategy in await trading.open_positions(session):
        limits = risk.limits_for(Strategy.model_validate(strategy).risk, sub.risk)
        peak = position.peak_price or position.average_cost
        levels.append(
            (
                sub.id,
                sub.symbol,
                risk.exit_levels(limits, position.average_cost, peak),
                limits.trailing_stop_pct,
            )
        )
    return levels
