"""Exit checks on every streamed price: the sorted index hands a price only the positions it
crosses and changes one position at a time; the stream process keeps it current from the
position events, and a crossing from the sandbox's stream sends that subscription's exit
job, which the fenced executor carries out once however often it is sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core.redis_clients import open_redis
from app.core.settings import Settings
from app.events.doorbell import Doorbell
from app.market_streams.exits import ExitIndex, HeldPosition
from app.market_streams.lease import Lease
from app.market_streams.prices import PriceBook
from app.models import Position, Trade
from app.trading.flows import TradingFlows
from app.trading.risk import ExitLevels
from tests.market_streams.conftest import StartStream, sold, streaming, until
from tests.trading.conftest import Queue, count, decision, make_bot, subscribe

D = Decimal


def held(
    sub: str,
    stop: Decimal | None = None,
    take: Decimal | None = None,
    trailing: tuple[Decimal, Decimal] | None = None,  # (percent, peak)
    symbol: str = "BTCUSDT",
) -> HeldPosition:
    pct, peak = trailing or (None, D(100))
    level = peak * (1 - pct / 100) if pct else None
    return HeldPosition(sub, symbol, ExitLevels(stop, take, level), pct, peak)


def test_a_price_touches_only_the_positions_it_crosses() -> None:
    index = ExitIndex(
        [
            held("low-stop", stop=D(90)),
            held("high-stop", stop=D(98), take=D(120)),
            held("trailing", trailing=(D(5), D(100))),  # at 95
            held("take", take=D(105)),
            held("eth", stop=D(99), symbol="ETHUSDT"),
        ]
    )
    assert index.crossed("BTCUSDT", D(100)) == set()
    assert index.crossed("BTCUSDT", D(96)) == {"high-stop"}
    assert index.crossed("BTCUSDT", D(96)) == set()  # left the index with its take-profit
    assert "high-stop" not in index and len(index) == 4
    assert index.crossed("BTCUSDT", D(106)) == {"take"}
    assert index.crossed("BTCUSDT", D("100.7")) == {"trailing"}  # 106's trailing level
    assert index.crossed("ETHUSDT", D(1)) == {"eth"}
    assert index.crossed("BTCUSDT", D(89)) == {"low-stop"}
    assert index.crossed("BNBUSDT", D(1)) == set()
    assert len(index) == 0


def test_a_new_high_raises_the_trailing_stops() -> None:
    index = ExitIndex(
        [
            held("tight", trailing=(D(5), D(100))),
            held("loose", stop=D(50), trailing=(D(20), D(100))),
            held("above", trailing=(D(5), D(120))),  # at 114
        ]
    )
    assert index.crossed("BTCUSDT", D(118)) == set()  # tight's level 112.1, loose's 94.4
    assert index.crossed("BTCUSDT", D(114)) == {"above"}  # its peak 120 is above the high
    assert index.crossed("BTCUSDT", D("112.2")) == set()
    assert index.crossed("BTCUSDT", D("112.1")) == {"tight"}
    assert index.crossed("BTCUSDT", D(150)) == set()
    assert index.crossed("BTCUSDT", D(120)) == {"loose"}  # 150 x 0.8


def test_a_position_put_later_starts_from_its_own_peak() -> None:
    index = ExitIndex([held("early", trailing=(D(50), D(100)))])
    assert index.crossed("BTCUSDT", D(200)) == set()  # early's level 100
    # Opened after that high, at 150: its trailing stop follows its own peak, not the high
    # before it, and a price above its peak (not above the symbol's high) raises it.
    index.put(held("late", trailing=(D(10), D(150))))
    assert index.crossed("BTCUSDT", D(160)) == set()  # late's level raised to 144
    assert index.crossed("BTCUSDT", D(144)) == {"late"}
    assert index.crossed("BTCUSDT", D(100)) == {"early"}


def test_put_and_remove_change_one_position() -> None:
    index = ExitIndex(
        [
            held("a", stop=D(90), take=D(110)),
            held("b", stop=D(95), trailing=(D(3), D(100))),  # trailing at 97
            held("c", stop=D(80), symbol="ETHUSDT"),
        ]
    )
    index.put(held("a", stop=D(96), take=D(130)))  # a new entry's levels replace the old
    assert index.crossed("BTCUSDT", D(120)) == set()  # a's old take-profit is gone
    assert index.crossed("BTCUSDT", D("116.4")) == {"b"}  # b's trailing stop raised to it
    index.remove("a")
    index.remove("a")  # not there: nothing to do
    index.remove("unknown")
    assert index.crossed("BTCUSDT", D(1)) == set()
    assert len(index) == 1 and "c" in index
    index.put(held("b", trailing=(D(3), D(100))))  # read again, from its stored peak
    assert index.trailing_symbols == {"BTCUSDT"}
    index.remove("b")
    assert index.trailing_symbols == set()
    assert index.crossed("ETHUSDT", D(80)) == {"c"}


async def test_a_price_jump_through_a_stop_produces_exactly_one_exit(
    app: FastAPI,
    flows: tuple[TradingFlows, Queue],
    own_stream: StartStream,
    record_property: Callable[[str, object], None],
) -> None:
    trading, _ = flows
    async with own_stream(risk={"stop_loss_pct": "5"}, run_exits=True) as own:
        await asyncio.sleep(1)  # prices at the entry: nothing crossed
        assert own.queue.named("trading.exit") == []
        jumped_at = time.monotonic()
        own.jump("-10")
        await until(lambda: sold(app, own.sub))
        # The latency is the benchmark's to judge (bench/stream.py); here it is only noted.
        record_property("jump_to_exit_fill_ms", round((time.monotonic() - jumped_at) * 1000))
        await asyncio.sleep(2)  # the price stays below the stop: the index checks it again
        await own.queue.finish()
    jobs = own.queue.named("trading.exit")
    assert {job["subscription_id"] for job in jobs} == {own.sub}
    # However many times it was sent, and sent again now.
    outcomes = await asyncio.gather(
        *(trading.exit(job["subscription_id"]) for job in [*jobs, jobs[0]]),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, Trade)]
    assert await count(app, Trade, subscription_id=own.sub, side="SELL") == 1
    assert await count(app, Trade, subscription_id=own.sub, side="SELL", status="filled") == 1


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
    (sale,) = [t for t in await trades_of(app, sub) if t.side == "SELL"]
    assert sale.status == "filled" and (sale.reason or "").startswith("trailing stop 3%")


async def test_the_index_follows_positions_opened_and_closed_while_it_streams(
    app: FastAPI,
    client: httpx.AsyncClient,
    marketplace_key: str,
    flows: tuple[TradingFlows, Queue],
    own_stream: StartStream,
) -> None:
    trading, _ = flows
    # The streams start with the renter's position read; two more renters of the same bot
    # buy and one of them sells out after that read.
    async with own_stream(risk={"stop_loss_pct": "5"}, run_exits=True) as own:
        streams = own.streams
        await until(lambda: own.sub in streams.exits)
        risk = {"stop_loss_pct": "5"}
        kept, closed = [await subscribe(client, marketplace_key, own.bot, risk=risk) for _ in "ab"]
        buy = await decision(app, kept, "BUY", minutes=1)
        await trading.execute(buy, [kept, closed])
        await until(lambda: kept in streams.exits and closed in streams.exits)
        await trading.execute(await decision(app, kept, "SELL", minutes=2), [closed])
        await until(lambda: closed not in streams.exits)
        assert kept in streams.exits and own.sub in streams.exits
        own.jump("-10")
        await until(lambda: sold(app, own.sub, kept))
        await asyncio.sleep(1)
        await own.queue.finish()
    assert {job["subscription_id"] for job in own.queue.named("trading.exit")} == {own.sub, kept}
    for sub in (own.sub, kept, closed):
        assert await count(app, Trade, subscription_id=sub, side="SELL", status="filled") == 1


async def test_the_events_doorbell_wakes_the_index(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    flows: tuple[TradingFlows, Queue],
    settings: Settings,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
) -> None:
    if settings.redis_url is None:
        pytest.skip("without Redis a commit rings its own process's doorbell only")
    trading, _ = flows
    sub = await subscribe(
        client, marketplace_key, await make_bot(client, developer_key), risk={"stop_loss_pct": "5"}
    )
    # The outbox's own timer is far off: only the ring of the buy's commit can wake the index.
    unpolled = stream_settings.model_copy(update={"stream_safety_poll_s": 600})
    doorbell, redis = Doorbell(settings), open_redis(settings)
    listening = asyncio.create_task(doorbell.listen(redis))
    try:
        async with streaming(app, unpolled, Queue(), prices, lease, doorbell.rung) as streams:
            await until(lambda: streams.events_seen is not None)
            await trading.execute(await decision(app, sub, "BUY"), [sub])
            await until(lambda: sub in streams.exits)
    finally:
        doorbell.stop()
        await listening
        doorbell.close()
        assert redis is not None
        await redis.aclose()


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


async def test_an_exit_waiting_for_a_worker_is_not_sent_again_while_the_price_stays_crossed(
    own_stream: StartStream,
) -> None:
    """With the workers behind, a crossed position is read again and is still open: its exit
    job is sent once, not again on every price that stays below its stop (a flood of jobs
    that kept the crossings' own and the decisions' behind it, bench/stream.py)."""
    async with own_stream(risk={"stop_loss_pct": "5"}) as own:
        own.jump("-10")
        await until(lambda: bool(own.queue.named("trading.exit")))
        # Prices below the stop every second, the position read again every 0.2 s.
        await asyncio.sleep(4)
        assert own.queue.named("trading.exit") == [{"subscription_id": own.sub}]


async def test_a_price_back_above_the_stop_arms_the_exit_again(
    app: FastAPI, own_stream: StartStream
) -> None:
    """The first job found the price back (the position stays open): the next crossing is a
    new one, and sends the exit again at once."""
    async with own_stream(risk={"stop_loss_pct": "5"}) as own:
        own.jump("-10")
        await until(lambda: len(own.queue.named("trading.exit")) == 1)
        own.jump("20")  # back above the entry's stop
        await asyncio.sleep(2)  # its reread sees the price back
        own.jump("-20")
        await until(lambda: len(own.queue.named("trading.exit")) == 2, within_s=3)
