"""Binance closes every stream connection after 24 h. With the sandbox's lifetime short, the
stream process reconnects every few seconds, and renters see nothing of it: a candle's close
across the reconnects is decided once, and a stop crossed right after a reconnect exits once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI

from app.market_streams.lease import Lease
from app.market_streams.names import price_stream
from app.models import Trade
from app.sandbox.server import create_sandbox_app
from app.sandbox.streams import StreamRules
from app.trading.flows import TradingFlows
from tests.market_streams.conftest import StartStream, sold, until
from tests.market_streams.test_decisions import as_of_sent, assert_decided_once
from tests.sandbox_server import SandboxServer, serve_in_thread
from tests.trading.conftest import Queue, count

# Binance's 24 h, made short: a test sees a reconnect every few seconds.
LIFETIME_S = 3.0


@pytest.fixture
def short_lived_sandbox() -> Iterator[SandboxServer]:
    """A sandbox of this test's own that closes (1001) every stream connection after
    `LIFETIME_S`, as Binance does after 24 h."""
    rules = StreamRules(max_lifetime_s=LIFETIME_S)
    with serve_in_thread(create_sandbox_app(stream_rules=rules), **rules.uvicorn_options()) as url:
        yield SandboxServer(url)


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_close_across_forced_reconnects_is_decided_once(
    app: FastAPI,
    flows: tuple[TradingFlows, Queue],
    lease: Lease,
    own_stream: StartStream,
    short_lived_sandbox: SandboxServer,
) -> None:
    trading, beat_queue = flows
    async with own_stream(hold=False, timeframe="1m", sandbox=short_lived_sandbox) as own:
        (connection,) = own.streams.pool.connections
        now = datetime.now(UTC)
        close = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        await asyncio.sleep(max(0.0, (close - now).total_seconds() - LIFETIME_S))
        opened_before_close = connection.opened
        await until(lambda: close.isoformat() in as_of_sent(own.queue), within_s=30)
        await asyncio.sleep(LIFETIME_S * 2)  # more reconnects: each tells the latest close
        assert connection.opened > opened_before_close  # the connection was closed around it
        assert await lease.renew()  # as the process does: the wait outlasts the fixture's lease
    assert as_of_sent(own.queue).count(close.isoformat()) == 1
    await assert_decided_once(app, trading, close, own.queue, beat_queue)


@pytest.mark.slow
async def test_a_stop_crossed_right_after_a_forced_reconnect_exits_once(
    app: FastAPI, own_stream: StartStream, short_lived_sandbox: SandboxServer
) -> None:
    async with own_stream(
        risk={"stop_loss_pct": "5"}, run_exits=True, sandbox=short_lived_sandbox
    ) as own:
        (connection,) = own.streams.pool.connections
        opened = connection.opened
        await until(
            lambda: connection.opened > opened and price_stream("BTCUSDT") in connection.subscribed
        )
        own.jump("-10")
        await until(lambda: sold(app, own.sub))
        await asyncio.sleep(LIFETIME_S)  # another reconnect, the price still below the stop
        await own.queue.finish()
    assert {job["subscription_id"] for job in own.queue.named("trading.exit")} == {own.sub}
    assert await count(app, Trade, subscription_id=own.sub, side="SELL") == 1
    assert await count(app, Trade, subscription_id=own.sub, side="SELL", status="filled") == 1
