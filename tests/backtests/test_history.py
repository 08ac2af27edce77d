"""History: klines fetched in pages through the governor, stored, and reused without the
exchange; only closed candles are kept."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import func, select

from app.backtests.history import PAGE, History
from app.integrations.binance.clients import BinanceClients
from app.models import Candle as CandleRow
from tests.sandbox_server import SandboxServer

KLINES = "GET /api/v3/klines"


def klines_requests(sandbox: SandboxServer) -> int:
    return sandbox.requests().get(KLINES, 0)


async def test_a_window_is_fetched_in_pages_once_and_then_read_from_the_table(
    app: FastAPI, clients: BinanceClients, sandbox: SandboxServer
) -> None:
    history = History(app.state.runtime.sessionmaker, clients)
    start, end = datetime(2025, 11, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    expected = int((end - start) / timedelta(hours=1))  # 1464: two pages
    before = klines_requests(sandbox)

    first = await history.candles("ETHUSDT", "1h", start, end)

    assert len(first) == expected > PAGE
    assert klines_requests(sandbox) - before == 2
    opens = [c.open_time for c in first]
    assert opens[0] == start and opens == sorted(set(opens))
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(opens))

    again = await history.candles("ETHUSDT", "1h", start, end)
    assert again == first
    assert klines_requests(sandbox) - before == 2  # the rerun asked the exchange nothing

    # A wider window fetches only what it lacks: the days before, in one page.
    earlier = await history.candles("ETHUSDT", "1h", start - timedelta(days=2), end)
    assert len(earlier) == expected + 48 and earlier[48:] == first
    assert klines_requests(sandbox) - before == 3


async def test_only_closed_candles_are_stored(
    app: FastAPI, clients: BinanceClients, sandbox: SandboxServer
) -> None:
    now = datetime.now(UTC)
    history = History(app.state.runtime.sessionmaker, clients, lambda: now)

    candles = await history.candles(
        "SOLUSDT", "1m", now - timedelta(minutes=10), now + timedelta(minutes=5)
    )

    assert candles and all(c.close_time < now for c in candles)
    assert candles[-1].open_time + timedelta(minutes=2) > now  # up to the last closed one
    async with app.state.runtime.sessionmaker() as session:
        latest = await session.scalar(
            select(func.max(CandleRow.close_time)).where(CandleRow.symbol == "SOLUSDT")
        )
    assert latest is not None and latest < now
