"""Exit checks on every streamed price: the sorted index hands a price only the positions it
crosses, and a crossing from the sandbox's stream sends that subscription's exit job, which
the fenced executor carries out once however often it is sent."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.core.settings import Settings
from app.market_streams.exits import ExitIndex
from app.market_streams.lease import Lease
from app.market_streams.names import price_stream
from app.market_streams.prices import PriceBook
from app.models import Position, Trade
from app.trading.flows import TradingFlows
from app.trading.risk import ExitLevels
from tests.market_streams.conftest import StartStream, streaming, until
from tests.trading.conftest import Queue, count, decision, make_bot, subscribe

D = Decimal


def test_a_price_touches_only_the_positions_it_crosses() -> None:
    index = ExitIndex()
    index.rebuild(
        [
            ("low-stop", "BTCUSDT", ExitLevels(D(90), None, None), None),
            ("high-stop", "BTCUSDT", ExitLevels(D(98), D(120), None), None),
            ("trailing", "BTCUSDT", ExitLevels(None, None, D(95)), D(5)),
            ("take", "BTCUSDT", ExitLevels(None, D(105), None), None),
            ("eth", "ETHUSDT", ExitLevels(D(99), None, None), None),
        ]
    )
    assert index.crossed("BTCUSDT", D(100)) == set()
    assert index.crossed("BTCUSDT", D(96)) == {"high-stop"}
    assert index.crossed("BTCUSDT", D(96)) == set()  # left the index with its take-profit
    assert index.crossed("BTCUSDT", D(106)) == {"take"}
    assert index.crossed("BTCUSDT", D(95)) == {"trailing"}
    assert index.crossed("ETHUSDT", D(1)) == {"eth"}
    assert index.crossed("BTCUSDT", D(89)) == {"low-stop"}
    assert index.crossed("BNBUSDT", D(1)) == set()


def test_a_new_high_raises_the_trailing_stops() -> None:
    index = ExitIndex()
    index.rebuild(
        [
            ("tight", "BTCUSDT", ExitLevels(None, None, D(95)), D(5)),  # peak 100
            ("loose", "BTCUSDT", ExitLevels(D(50), None, D(80)), D(20)),  # peak 100
            ("above", "BTCUSDT", ExitLevels(None, None, D(114)), D(5)),  # peak 120
        ]
    )
    assert index.crossed("BTCUSDT", D(118)) == set()  # tight's level 112.1, loose's 94.4
    assert index.crossed("BTCUSDT", D(114)) == {"above"}  # its peak 120 is above the high
    assert index.crossed("BTCUSDT", D("112.2")) == set()
    assert index.crossed("BTCUSDT", D("112.1")) == {"tight"}
    assert index.crossed("BTCUSDT", D(150)) == set()
    assert index.crossed("BTCUSDT", D(120)) == {"loose"}  # 150 x 0.8


async def test_a_streamed_price_through_a_stop_exits_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
) -> None:
    trading, _ = flows
    bot = await make_bot(client, developer_key)
    sub = await subscribe(client, marketplace_key, bot, risk={"stop_loss_pct": "5"})
    await trading.execute(await decision(app, sub, "BUY"), [sub])
    queue = Queue()
    async with streaming(app, stream_settings, queue, prices, lease) as streams:
        await until(lambda: price_stream("BTCUSDT") in streams.pool.subscribed)
        await asyncio.sleep(1)  # prices at the entry: nothing crossed
        assert queue.named("trading.exit") == []
        # The market falls 10% below the entry (the entry is raised: the sandbox's price is
        # every test's).
        async with app.state.runtime.sessionmaker() as session:
            await session.execute(
                update(Position)
                .where(Position.subscription_id == sub)
                .values(average_cost=Position.average_cost * D("1.1"))
            )
            await session.commit()
        await until(lambda: bool(queue.named("trading.exit")))
    jobs = queue.named("trading.exit")
    assert {job["subscription_id"] for job in jobs} == {sub}
    # However many times it was sent (each rebuild until it runs), and sent again now.
    outcomes = await asyncio.gather(
        *(trading.exit(job["subscription_id"]) for job in [*jobs, jobs[0]]),
        return_exceptions=True,
    )
    assert [o for o in outcomes if isinstance(o, Trade) and o.side == "SELL"] != []
    assert await count(app, Trade, subscription_id=sub, side="SELL") == 1
    assert await count(app, Trade, subscription_id=sub, side="SELL", status="filled") == 1


async def test_a_trailing_stop_follows_the_streamed_high(
    app: FastAPI, flows: tuple[TradingFlows, Queue], own_stream: StartStream
) -> None:
    trading, _ = flows
    async with own_stream(risk={"trailing_stop_pct": "3"}) as own:
        sub = own.sub
        jump = {"symbol": "BTCUSDT", "percent": "5"}
        high = Decimal(own.sandbox.admin("POST", "/sandbox/market/jump", json=jump).json()["price"])
        await until(lambda: _peak(app, sub, at_least=high * Decimal("0.99")))  # the streamed high
        assert own.queue.named("trading.exit") == []
        # Back down 5%: below the high's trailing level (97% of it), above the entry's.
        own.jump("-5")
        await until(lambda: bool(own.queue.named("trading.exit")))
    for job in own.queue.named("trading.exit"):
        await trading.exit(job["subscription_id"])
    (sold,) = [t for t in await trades_of(app, sub) if t.side == "SELL"]
    assert sold.status == "filled" and (sold.reason or "").startswith("trailing stop 3%")


async def _peak(app: FastAPI, sub: str, at_least: Decimal) -> bool:
    async with app.state.runtime.sessionmaker() as session:
        peak = await session.scalar(
            select(Position.peak_price).where(Position.subscription_id == sub)
        )
    return peak is not None and peak >= at_least


async def trades_of(app: FastAPI, sub: str) -> list[Trade]:
    async with app.state.runtime.sessionmaker() as session:
        rows = await session.scalars(select(Trade).where(Trade.subscription_id == sub))
        return list(rows.all())
