"""The Binance governor's metrics: the weight Binance reports, and its bans."""

from __future__ import annotations

import pytest

from app.integrations.binance.client import BinanceClient
from app.integrations.binance.errors import RateLimited
from tests.integrations.binance.test_client import opened as opened
from tests.operations.conftest import sample
from tests.sandbox_server import SandboxServer


async def test_the_used_weight_and_a_ban_are_counted(
    sandbox: SandboxServer, opened: tuple[BinanceClient, str]
) -> None:
    client, _ = opened
    await client.price("BTCUSDT")
    assert sample("botmarket_binance_used_weight") > 0
    bans = sample("botmarket_binance_bans_total")
    sandbox.limit_weight(1, violations_before_ban=1, ban_seconds=1)
    try:
        with pytest.raises(RateLimited):
            await client.price("BTCUSDT")
    finally:
        sandbox.reset_weight_limits()
    assert sample("botmarket_binance_bans_total") > bans
