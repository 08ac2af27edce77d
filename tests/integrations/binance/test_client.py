"""Our wrapper over python-binance: errors translated, clock resynced, governor obeyed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from app.integrations.binance.client import BinanceClient
from app.integrations.binance.errors import (
    AuthError,
    InsufficientBalance,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
    UnknownOutcome,
)
from app.integrations.binance.governor import InProcessGovernor
from app.sandbox.exchange import check_lot, check_notional
from app.sandbox.market import SYMBOLS
from tests.integrations.binance.clock import skew
from tests.sandbox_server import SandboxServer


@pytest.fixture
async def opened(sandbox: SandboxServer) -> AsyncIterator[tuple[BinanceClient, str]]:
    api_key, api_secret = sandbox.new_account(USDT="100")
    client = await BinanceClient.open(
        InProcessGovernor(6000), api_key=api_key, api_secret=api_secret, api_url=sandbox.url
    )
    yield client, api_key
    await client.close()


def size_of(quantity: Decimal):  # type: ignore[no-untyped-def]
    async def size() -> Decimal:
        return quantity

    return size


async def test_errors_become_ours(sandbox: SandboxServer, opened) -> None:
    client, _ = opened
    with pytest.raises(InvalidOrder, match="LOT_SIZE"):
        await client.market_order("BTCUSDT", "BUY", "lot", size_of(Decimal("0.000015")))
    with pytest.raises(InsufficientBalance):
        await client.market_order("BTCUSDT", "BUY", "big", size_of(Decimal("1")))
    assert await client.find_order("BTCUSDT", "never-sent") is None
    with pytest.raises(OrderNotFound):
        await client.symbol_rules("NOPEUSDT")
    bad = await BinanceClient.open(
        InProcessGovernor(6000), api_key="sbx-unknown", api_secret="0" * 64, api_url=sandbox.url
    )
    try:
        with pytest.raises(AuthError):
            await bad.balances()
    finally:
        await bad.close()
    sandbox.admin("POST", "/sandbox/faults", json={"error_5xx_next": 3})
    with pytest.raises(UnknownOutcome):  # reads are retried, three 5xx exhaust them
        await client.price("BTCUSDT")
    sandbox.admin("POST", "/sandbox/faults", json={"error_5xx_next": 1})
    assert await client.price("BTCUSDT") > 0  # one 5xx, then the retry succeeds


async def test_clock_drift_is_resynced(opened) -> None:
    client, _ = opened
    skew(client._clock, -120_000)  # as if our clock stepped two minutes back
    balances = await client.balances()  # -1021, resync from /time, retried once
    assert balances["USDT"] == Decimal(100)


async def test_a_ban_holds_every_call_until_retry_after(sandbox: SandboxServer, opened) -> None:
    client, _ = opened
    sandbox.limit_weight(1, violations_before_ban=1, ban_seconds=1)
    try:
        with pytest.raises(RateLimited) as caught:
            await client.price("BTCUSDT")
        banned_at = time.monotonic()  # the last ban answer was just read
        assert caught.value.retry_after_s == 1
        sandbox.admin("POST", "/sandbox/config", json={"weight_per_minute": 6000})
        await client.price("BTCUSDT")  # the governor waits out the ban before sending
        assert time.monotonic() - banned_at >= 0.9
    finally:
        sandbox.reset_weight_limits()


async def test_rules_from_exchange_info_size_orders_the_sandbox_accepts(opened) -> None:
    client, _ = opened
    for symbol, spec in SYMBOLS.items():
        rules = await client.symbol_rules(symbol)
        price = Decimal("123.45")
        quantity = rules.size_market_buy(Decimal("50"), price)
        check_lot(spec, quantity)  # the sandbox's own checks raise on a violation
        check_notional(spec, quantity, price)
