"""Which streams the deployment needs, and the exit levels they are checked against."""

from __future__ import annotations

import json
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from app.bots.strategy import RiskDefaults, Strategy
from app.market_streams import repository
from app.market_streams.exits import HeldPosition
from app.market_streams.names import kline_stream, price_stream
from app.trading import repository as trading
from app.trading import risk


async def wanted_streams(session: AsyncSession) -> set[str]:
    """The kline stream of every traded (symbol, timeframe), the price stream of every held
    symbol."""
    klines = {kline_stream(s, t) for s, t in await repository.traded_markets(session)}
    return klines | {price_stream(s) for s in await trading.held_symbols(session)}


async def held_positions(
    session: AsyncSession,
    sub_ids: Collection[str] | None = None,
    after: str = "",
    batch: int | None = None,
) -> list[HeldPosition]:
    """The exit levels of active subscriptions' open positions, by subscription id: of
    `sub_ids` when given (a position event's), else of every one after `after`, `batch` at
    most (the index's load, in chunks). Read as plain columns, and each bot version's limits
    (and each distinct override of them) validated once a read."""
    rows = await repository.open_position_levels(session, sub_ids, after, batch)
    versions = await trading.bot_versions(session, {row[3] for row in rows})
    defaults = {
        version_id: Strategy.model_validate(version.strategy).risk
        for version_id, version in versions.items()
    }
    limits: dict[tuple[str, str], RiskDefaults] = {}
    held = []
    for sub_id, symbol, overrides, version_id, average_cost, peak_price in rows:
        key = (version_id, json.dumps(overrides, sort_keys=True))
        if key not in limits:
            limits[key] = risk.limits_for(defaults[version_id], overrides)
        limit = limits[key]
        peak = peak_price or average_cost
        held.append(
            HeldPosition(
                sub_id,
                symbol,
                risk.exit_levels(limit, average_cost, peak),
                limit.trailing_stop_pct,
                peak,
            )
        )
    return held
