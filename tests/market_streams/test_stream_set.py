"""The stream process follows the database: the klines of every traded (symbol, timeframe),
split over connections of the per-connection limit, subscribed and dropped live, reopened
after the exchange drops them. Against the sandbox's streams over real WebSockets."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from app.core.settings import Settings
from app.market_streams.lease import Lease
from app.market_streams.names import kline_stream
from app.market_streams.prices import PriceBook
from app.models import Subscription
from tests.market_streams.conftest import streaming, until
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import Queue, make_bot, subscribe


async def test_a_new_subscription_is_streamed_and_a_cancelled_one_dropped(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
) -> None:
    bot = await make_bot(client, developer_key)
    await subscribe(client, marketplace_key, bot, symbol="ETHUSDT")
    queue = Queue()
    async with streaming(app, stream_settings, queue, prices, lease) as streams:
        eth, btc = kline_stream("ETHUSDT", "1h"), kline_stream("BTCUSDT", "1h")
        await until(lambda: eth in streams.pool.subscribed and streams.pool.healthy(5))
        sub = await subscribe(client, marketplace_key, bot, symbol="BTCUSDT")
        await until(lambda: btc in streams.pool.subscribed)
        async with app.state.runtime.sessionmaker() as session:
            await session.execute(
                update(Subscription).where(Subscription.id == sub).values(status="cancelled")
            )
            await session.commit()
        await until(lambda: btc not in streams.pool.subscribed)
        # Unsubscribed on the connection that goes on carrying the other stream.
        (connection,) = streams.pool.connections
        assert connection.subscribed == {eth}
    # Each market's latest close, undecided, was sent once as its stream was subscribed,
    # however many refreshes followed.
    groups = [g for job in queue.named("trading.decide") for g in job["groups"]]
    assert sorted(g["symbol"] for g in groups) == ["BTCUSDT", "ETHUSDT"]


async def test_streams_are_split_over_connections_of_the_limit(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
    lease: Lease,
) -> None:
    bot = await make_bot(client, developer_key)
    markets = [("BTCUSDT", "1h"), ("BTCUSDT", "4h"), ("ETHUSDT", "1h")]
    for symbol, timeframe in markets:
        await subscribe(client, marketplace_key, bot, symbol=symbol, timeframe=timeframe)
    two_each = stream_settings.model_copy(update={"stream_max_per_connection": 2})
    async with streaming(app, two_each, Queue(), prices, lease) as streams:
        wanted = {kline_stream(s, t) for s, t in markets}
        await until(lambda: streams.pool.subscribed == wanted)
        assert sorted(len(c.subscribed) for c in streams.pool.connections) == [1, 2]


async def test_a_dropped_connection_is_reopened_and_resubscribed(
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
    stream = kline_stream("BTCUSDT", "1h")
    async with streaming(app, stream_settings, Queue(), prices, lease) as streams:
        await until(lambda: stream in streams.pool.subscribed)
        (connection,) = streams.pool.connections
        for opened in (2, 3):  # the second drop finds the reopened connection
            assert sandbox.admin("POST", "/sandbox/streams/drop").json()["dropped"] >= 1
            await until(lambda: connection.opened == opened and stream in connection.subscribed)
            await until(lambda: streams.pool.healthy(5))
