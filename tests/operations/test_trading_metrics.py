"""The trading engine's operator metrics move where the facts happen: a stale refusal, a
reconciler sweep, and an order past its lease that a sweep cannot resolve until Binance answers."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from app.core.settings import Settings
from app.trading.flows import TradingFlows
from tests.helpers import Clock
from tests.operations.conftest import sample
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import (  # noqa: F401 - fixtures
    Queue,
    decision,
    prices,
    sandbox_clients,
    subscription_flows,
    trading_executor,
)
from tests.trading.conftest import (
    clock as clock,
)
from tests.trading.conftest import (
    flows as flows,
)
from tests.trading.test_execution import subscription
from tests.trading.test_money_safety import latest_candle, unknown_testnet_buy


async def test_a_stale_refusal_is_counted(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    clock: Clock,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    sub = await subscription(client, developer_key, marketplace_key, "paper")
    old = await decision(app, sub, "BUY", candle=latest_candle(clock) - timedelta(hours=2))
    before = sample("botmarket_stale_refusals_total")
    (refused,) = await flow.execute(old, [sub])
    assert refused.status == "refused"
    assert sample("botmarket_stale_refusals_total") == before + 1


async def test_sweeps_count_what_they_resolve_and_what_they_cannot(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    clock: Clock,
    settings: Settings,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    await unknown_testnet_buy(app, client, flow, clock, sandbox, developer_key, marketplace_key)
    sweeps = sample("botmarket_reconciler_sweeps_total")
    unresolved = sample("botmarket_reconciler_unresolved_total")
    resolved = sample("botmarket_reconciler_resolved_total", kind="attempts")
    clock.advance(settings.order_lease_s + 1)
    # Past its lease, while Binance answers nothing but 5xx: the sweep cannot tell.
    sandbox.admin("POST", "/sandbox/faults", json={"error_5xx_next": 100})
    try:
        await flow.reconcile(clock.now)
    finally:
        sandbox.admin("DELETE", "/sandbox/faults")
    assert sample("botmarket_reconciler_unresolved_total") == unresolved + 1
    assert sample("botmarket_reconciler_resolved_total", kind="attempts") == resolved
    clock.advance(settings.order_lease_s + 1)
    assert (await flow.reconcile(clock.now)).attempts_resolved == 1
    assert sample("botmarket_reconciler_resolved_total", kind="attempts") == resolved + 1
    assert sample("botmarket_reconciler_unresolved_total") == unresolved + 1
    assert sample("botmarket_reconciler_sweeps_total") == sweeps + 2
