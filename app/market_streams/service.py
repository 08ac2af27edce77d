"""Which streams the deployment needs, and the exit levels they are checked against."""

from __future__ import annotations

import json
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.bots.strategy import RiskDefaults, Strategy
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
    subscription's open position. Read as plain columns, and each bot version's limits (and
    each distinct override of them) validated once: the stream process rereads every open
    position every few seconds."""
    rows = await trading.open_position_levels(session)
    versions = await trading.bot_versions(session, {row[3] for row in rows})
    defaults = {
        version_id: Strategy.model_validate(version.strategy).risk
        for version_id, version in versions.items()
    }
    limits: dict[tuple[str, str], RiskDefaults] = {}
    levels = []
    for sub_id, symbol, overrides, version_id, average_cost, peak_price in rows:
        key = (version_id, json.dumps(overrides, sort_keys=True))
        if key not in limits:
            limits[key] = risk.limits_for(defaults[version_id], overrides)
        limit = limits[key]
        levels.append(
            (
                sub_id,
                symbol,
                risk.exit_levels(limit, average_cost, peak_price or average_cost),
                limit.trailing_stop_pct,
            )
        )
    return levels
