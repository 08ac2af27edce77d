"""History: klines fetched in pages through the governor, stored, and reused without the
exchange; only closed candles are kept."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from app.backtests.flows import BacktestFlows
from app.backtests.history import PAGE, History
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.llm.registry import VoterPool
from app.models import Backtest
from app.models import Candle as CandleRow
from tests.backtests.conftest import make_bot, start
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import Queue, fresh_clients

KLINES = "GET /api/v3/klines"
EXCHANGE_INFO = "GET /api/v3/exchangeInfo"


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


async def test_a_symbols_rules_are_fetched_once_and_then_read_from_the_table(
    app: FastAPI, sandbox: SandboxServer
) -> None:
    before = sandbox.requests().get(EXCHANGE_INFO, 0)
    async with fresh_clients(sandbox) as clients:
        first = await History(app.state.runtime.sessionmaker, clients).rules("BNBUSDT")
        assert first == await clients.rules("BNBUSDT")  # as the exchange states them
    assert sandbox.requests().get(EXCHANGE_INFO, 0) - before == 1

    async with fresh_clients(sandbox) as clients:
        again = await History(app.state.runtime.sessionmaker, clients).rules("BNBUSDT")
    assert again == first
    assert sandbox.requests().get(EXCHANGE_INFO, 0) - before == 1  # read from the table


async def test_a_rerun_of_a_backtest_asks_the_exchange_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    sandbox: SandboxServer,
) -> None:
    bot = await make_bot(client, developer_key)
    runs = [(await start(client, bot, headers(developer_key))).json()["id"] for _ in range(2)]
    results = []
    for backtest_id in runs:
        # Each run in a process of its own: no client cache survives from the first.
        async with fresh_clients(sandbox) as clients:
            voters = VoterPool(settings)
            flows = BacktestFlows(
                app.state.runtime.sessionmaker, clients, voters, settings, Queue()
            )
            before = sum(sandbox.requests().values())
            await flows.run(backtest_id)
            asked = sum(sandbox.requests().values()) - before
            await voters.aclose()
        async with app.state.runtime.sessionmaker() as session:
            row = await session.get(Backtest, backtest_id)
        assert row is not None and row.status == "succeeded"
        results.append((asked, json.dumps(row.result, sort_keys=True)))
    (first_asked, first), (rerun_asked, rerun) = results
    assert first_asked > 0 and rerun_asked == 0
    assert rerun == first
