"""Beat's exit pass as the streams' fallback: it leaves alone the positions a healthy stream
watches (their symbol's streamed price is fresh), checks the others in batches at the
exchange's price, and an exit it makes and the stream's job for the same crossing fill once
between them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.market_streams.prices import PriceBook
from app.models import Position, Trade
from app.trading.flows import TradingFlows
from tests.market_streams.conftest import StartStream, until
from tests.trading.conftest import NOW, Queue, count, decision, make_bot, subscribe

D = Decimal


async def cross_stops(app: FastAPI, *sub_ids: str) -> None:
    """The positions' entries raised 10% above the market: their 5% stop-loss is crossed (the
    sandbox's price is every test's, so the entry moves, not the market)."""
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(
            update(Position)
            .where(Position.subscription_id.in_(sub_ids))
            .values(average_cost=Position.average_cost * D("1.1"))
        )
        await session.commit()


async def test_protect_leaves_the_streamed_symbols_to_the_stream(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    developer_key: str,
    marketplace_key: str,
    prices: PriceBook,
) -> None:
    trading, _ = flows
    bot = await make_bot(client, developer_key)
    btc = await subscribe(client, marketplace_key, bot, risk={"stop_loss_pct": "5"})
    eth = await subscribe(
        client, marketplace_key, bot, symbol="ETHUSDT", risk={"stop_loss_pct": "5"}
    )
    for sub in (btc, eth):
        await trading.execute(await decision(app, sub, "BUY"), [sub])
    await cross_stops(app, btc, eth)
    # A stream watches BTCUSDT (its price is fresh), none ETHUSDT.
    await prices.store({"BTCUSDT": (D(1), datetime.now(UTC))})
    (sold,) = await trading.protect(NOW)
    assert sold.subscription_id == eth and sold.side == "SELL" and sold.status == "filled"
    assert await count(app, Trade, subscription_id=btc, side="SELL") == 0
    async with app.state.runtime.sessionmaker() as session:
        btc_peak = await session.scalar(
            select(Position.peak_price).where(Position.subscription_id == btc)
        )
    assert btc_peak is None  # not even read: the stream raises its peaks
    assert await trading.protect(NOW) == []
    assert await count(app, Trade, side="SELL") == 1


async def test_protect_walks_every_position_in_batches(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    developer_key: str,
    marketplace_key: str,
) -> None:
    trading, _ = flows
    bot = await make_bot(client, developer_key)
    subs = [
        await subscribe(client, marketplace_key, bot, risk={"stop_loss_pct": "5"}) for _ in range(5)
    ]
    await trading.execute(await decision(app, subs[0], "BUY"), subs)
    await cross_stops(app, *subs[1:])
    trading._protect_batch = 2  # three batches: two, two and one
    exits = await trading.protect(NOW)
    assert sorted(t.subscription_id for t in exits) == sorted(subs[1:])
    async with app.state.runtime.sessionmaker() as session:
        kept_peak = await session.scalar(
            select(Position.peak_price).where(Position.subscription_id == subs[0])
        )
    assert kept_peak is not None  # the uncrossed position was checked too: its peak raised
    assert await trading.protect(NOW) == []


@pytest.mark.slow
async def test_a_stalled_stream_hands_exits_to_polling_and_none_fills_twice(
    app: FastAPI,
    flows: tuple[TradingFlows, Queue],
    prices: PriceBook,
    own_stream: StartStream,
) -> None:
    trading, _ = flows
    async with own_stream(risk={"stop_loss_pct": "5"}) as own:
        sub = own.sub
        await until(lambda: _fresh(prices))
        assert await trading.protect(NOW) == []  # the stream watches the position
        # The symbol's streams fall silent (the connection stays open): once its price is
        # older than the stream's health window, polling checks the position.
        own.sandbox.admin("POST", "/sandbox/streams/pause", json={"symbol": "BTCUSDT"})
        await until(lambda: _stale(prices), within_s=15)
        await cross_stops(app, sub)
        # Polling and a late stream job for the same crossing, at once.
        outcomes = await asyncio.gather(trading.protect(NOW), trading.exit(sub))
        own.sandbox.admin(
            "POST", "/sandbox/streams/pause", json={"symbol": "BTCUSDT", "paused": False}
        )
        await until(lambda: _fresh(prices))
        await asyncio.sleep(1)  # the stream back: the position is flat, nothing more is sent
    polled, _ = outcomes
    assert [t.side for t in polled] == ["SELL"]
    for job in own.queue.named("trading.exit"):
        await trading.exit(job["subscription_id"])
    assert await trading.protect(NOW) == []
    assert await count(app, Trade, subscription_id=sub, side="SELL") == 1
    assert await count(app, Trade, subscription_id=sub, side="SELL", status="filled") == 1


async def _fresh(prices: PriceBook) -> bool:
    return "BTCUSDT" in await prices.fresh({"BTCUSDT"}, 5)


async def _stale(prices: PriceBook) -> bool:
    return not await _fresh(prices)
