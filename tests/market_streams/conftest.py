"""Fixtures of the market-stream tests: the stream flows pointed at the sandbox's streams over
real WebSockets, on the test's database, with the trading tests' recording queue and flows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.market_streams.flows import MarketStreamFlows
from app.market_streams.lease import Lease
from app.market_streams.prices import PriceBook
from tests.sandbox_server import SandboxServer, serve_sandbox
from tests.trading.conftest import (  # noqa: F401 - the trading tests' fixtures, used here too
    Queue,
    clock,
    flows,
    prices,
    sandbox_clients,
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
    app: FastAPI, settings: Settings, queue: Queue, book: PriceBook, held: Lease
) -> AsyncIterator[MarketStreamFlows]:
    """The stream flows running on this loop until the block ends."""
    streams = MarketStreamFlows(app.state.runtime.sessionmaker, settings, queue, book, held)
    running = asyncio.create_task(streams.run())
    try:
        yield streams
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


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
