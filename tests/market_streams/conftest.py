"""Fixtures of the market-stream tests: the stream flows pointed at the sandbox's streams over
real WebSockets, on the test's database, with the trading tests' recording queue and flows;
`own_stream` starts them on a sandbox of the test's own for a renter of a new bot, holding a
position or not."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.market_streams.flows import MarketStreamFlows
from app.market_streams.lease import Lease
from app.market_streams.names import kline_stream, price_stream
from app.market_streams.prices import PriceBook
from app.models import Trade
from app.trading.flows import TradingFlows
from tests.sandbox_server import SandboxServer, serve_sandbox
from tests.trading.conftest import (  # noqa: F401 - the trading tests' fixtures, used here too
    Queue,
    clock,
    count,
    decision,
    flows,
    make_bot,
    prices,
    sandbox_clients,
    subscribe,
    subscription_flows,
    trading_executor,
)


def stream_url(sandbox: SandboxServer) -> str:
    return sandbox.url.replace("http://", "ws://")


@pytest.fixture
def stream_settings(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(
        update={"binance_stream_url": stream_url(sandbox), "stream_refresh_s": 0.2}
    )


@pytest.fixture
def own_sandbox() -> Iterator[SandboxServer]:
    """A sandbox of this test's own, whose streams it pauses without disturbing the others'."""
    with serve_sandbox() as server:
        yield server


@pytest.fixture
async def lease(app: FastAPI) -> Lease:
    """The market streams' lease, held by this test's stream flows."""
    # Not renewed here (the process renews its own): long enough to outlive any test that
    # waits for a candle close, so that the lease still holds when the close comes.
    held = Lease(app.state.runtime.sessionmaker, "test", ttl_s=600)
    assert await held.acquire()
    return held


@contextlib.asynccontextmanager
async def streaming(
    app: FastAPI,
    settings: Settings,
    queue: Queue,
    book: PriceBook,
    held: Lease,
    events_rung: asyncio.Event | None = None,
) -> AsyncIterator[MarketStreamFlows]:
    """The stream flows running on this loop until the block ends."""
    streams = MarketStreamFlows(
        app.state.runtime.sessionmaker, settings, queue, book, held, events_rung
    )
    running = asyncio.create_task(streams.run())
    try:
        yield streams
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def sold(app: FastAPI, *subs: str) -> bool:
    """Each of `subs` has an exit's sale filled."""
    for sub in subs:
        if not await count(app, Trade, subscription_id=sub, side="SELL", status="filled"):
            return False
    return True


async def until(check: Callable[[], bool | Awaitable[bool]], within_s: float = 10.0) -> None:
    """Wait for `check` to hold, failing the test if it does not within `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, "the condition did not come to hold in time"
        await asyncio.sleep(0.05)


@dataclass
class ExitingQueue(Queue):
    """A recording queue that, given `trading`, also runs each exit job it is sent at once,
    as a worker takes it: the exits happen while the stream runs."""

    trading: TradingFlows | None = None
    running: set[asyncio.Task[Trade | None]] = field(default_factory=set)

    async def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        await super().__call__(name, kwargs)
        if name == "trading.exit" and self.trading is not None:
            self.running.add(asyncio.create_task(self.trading.exit(kwargs["subscription_id"])))

    async def finish(self) -> None:
        """Wait for the exits sent; a job that met another's exit in flight fails as a
        worker's would (and is retried there): its outcome is not this queue's to judge."""
        await asyncio.gather(*self.running, return_exceptions=True)


@dataclass
class OwnStream:
    """The stream flows on a sandbox of the test's own, and the renter they watch."""

    sub: str
    bot: dict[str, Any]
    queue: ExitingQueue
    streams: MarketStreamFlows
    sandbox: SandboxServer
    settings: Settings

    def jump(self, percent: str, symbol: str = "BTCUSDT") -> None:
        """The sandbox's price of `symbol` jumps by `percent` (through a stop, for one)."""
        body = {"symbol": symbol, "percent": percent}
        self.sandbox.admin("POST", "/sandbox/market/jump", json=body)


StartStream = Callable[..., contextlib.AbstractAsyncContextManager[OwnStream]]


@pytest.fixture
def own_stream(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],  # noqa: F811 - the fixture imported above
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,  # noqa: F811
    lease: Lease,
    own_sandbox: SandboxServer,
) -> StartStream:
    """Start the stream flows on this test's own sandbox (or `sandbox`) for a renter of a new
    bot subscribed with `body` (risk limits, timeframe), holding a BTCUSDT position bought
    before the streams start when `hold`; the block begins once the renter's price stream
    (when holding, else its kline stream) is subscribed. With `run_exits`, the exit jobs
    sent run at once."""
    trading, _ = flows

    @contextlib.asynccontextmanager
    async def start(
        *,
        hold: bool = True,
        run_exits: bool = False,
        sandbox: SandboxServer = own_sandbox,
        **body: Any,
    ) -> AsyncIterator[OwnStream]:
        settings = stream_settings.model_copy(update={"binance_stream_url": stream_url(sandbox)})
        bot = await make_bot(client, developer_key)
        sub = await subscribe(client, marketplace_key, bot, **body)
        if hold:
            await trading.execute(await decision(app, sub, "BUY"), [sub])
        queue = ExitingQueue(trading=trading if run_exits else None)
        timeframe = body.get("timeframe", "1h")
        wanted = price_stream("BTCUSDT") if hold else kline_stream("BTCUSDT", timeframe)
        try:
            async with streaming(app, settings, queue, prices, lease) as streams:
                await until(lambda: wanted in streams.pool.subscribed)
                yield OwnStream(sub, bot, queue, streams, sandbox, settings)
        finally:
            await queue.finish()

    return start
