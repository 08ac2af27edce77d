"""The streamed prices reach the workers' price book (Redis beside MariaDB, the database
beside SQLite), and orders are sized and filled at them without a REST ticker read while
they are fresh; a stale or missing one is read from the exchange."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI

from app.core.settings import Settings
from app.market_streams.lease import Lease
from app.market_streams.prices import PriceBook
from app.trading.flows import TradingFlows
from tests.market_streams.conftest import streaming, until
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import Queue, decision, make_bot, subscribe

TICKER = "GET /api/v3/ticker/price"


async def test_streamed_prices_reach_the_price_book(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
    sandbox: SandboxServer,
) -> None:
    await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    async with streaming(app, stream_settings, Queue(), prices, lease):

        async def priced() -> bool:
            return bool(await prices.fresh({"BTCUSDT"}, 2))

        await until(priced)
    (price,) = (await prices.fresh({"BTCUSDT", "ETHUSDT"}, 5)).values()  # ETH is not traded
    async with httpx.AsyncClient(base_url=sandbox.url) as rest:
        ticker = await rest.get("/api/v3/ticker/price", params={"symbol": "BTCUSDT"})
    # The sandbox's price moves a little every second.
    assert abs(price / Decimal(ticker.json()["price"]) - 1) < Decimal("0.01")


async def test_orders_read_a_fresh_streamed_price_and_the_exchange_for_a_stale_one(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    developer_key: str,
    marketplace_key: str,
    prices: PriceBook,
    lease: Lease,
    sandbox: SandboxServer,
) -> None:
    trading, _ = flows
    bot = await make_bot(client, developer_key)
    fresh_sub, stale_sub = [await subscribe(client, marketplace_key, bot) for _ in range(2)]
    streamed = Decimal("12345.6")  # far from the sandbox's own price, to tell them apart
    await prices.store({"BTCUSDT": (streamed, datetime.now(UTC))})
    before = sandbox.requests().get(TICKER, 0)
    (trade,) = await trading.execute(await decision(app, fresh_sub, "BUY"), [fresh_sub])
    assert sandbox.requests().get(TICKER, 0) == before
    assert trade is not None and abs(trade.price / streamed - 1) < Decimal("0.001")  # slippage
    await prices.store({"BTCUSDT": (streamed, datetime.now(UTC) - timedelta(minutes=1))})
    (trade,) = await trading.execute(await decision(app, stale_sub, "BUY", minutes=1), [stale_sub])
    assert sandbox.requests().get(TICKER, 0) == before + 1
    assert trade is not None and abs(trade.price / streamed - 1) > Decimal("0.1")
