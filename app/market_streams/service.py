"""Which streams the deployment needs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.market_streams import repository
from app.market_streams.names import kline_stream, price_stream


async def wanted_streams(session: AsyncSession) -> set[str]:
    """The kline stream of every traded (symbol, timeframe), the price stream of every held
    symbol."""
    klines = {kline_stream(s, t) for s, t in await repository.traded_markets(session)}
    return klines | {price_stream(s) for s in await repository.held_symbols(session)}
