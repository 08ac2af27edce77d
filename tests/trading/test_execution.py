"""At-most-once execution in paper and testnet modes, against the sandbox exchange."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select

from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import UnknownOutcome
from app.integrations.binance.governor import InProcessGovernor
from app.models import ExchangeCredential, Position, Subscription, Trade
from app.trading.execution import AttemptInFlight, Executor, OrderIntent, client_order_id
from app.trading.fills import Side, paper_fill
from tests.api.test_contract import listed_bot
from tests.helpers import Clock, headers, new_principal
from tests.sandbox_server import SandboxServer

D = Decimal


@pytest.fixture
def clock() -> Clock:
    return Clock.real()


@pytest.fixture
async def executor(
    app: FastAPI, settings: Settings, sandbox: SandboxServer, clock: Clock
) -> AsyncIterator[Executor]:
    runtime = app.state.runtime
    clients = BinanceClients(
        InProcessGovernor(6000),
        api_url=sandbox.url,
        rules_ttl_s=300,
        idle_s=300,
        recv_window_ms=settings.binance_recv_window_ms,
    )
    yield Executor(runtime.sessionmaker, clients, runtime.keyring, settings, clock)
    await clients.close()


async def subscription(
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    mode: str,
    credentials: tuple[str, str] | None = None,
    quote_amount: str = "100",
) -> str:
    principal = new_principal()
    renter = headers(marketplace_key, principal)
    if credentials:
        await client.put(
            "/api/v1/credentials/binance",
            json={"api_key": credentials[0], "api_secret": credentials[1], "testnet": True},
            headers=renter,
        )
    bot = await listed_bot(client, developer_key)
    response = await client.post(
        "/api/v1/subscriptions",
        json={
            "bot_id": bot["id"],
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "mode": mode,
            "quote_amount": quote_amount,
        },
        headers=renter,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def rows(app: FastAPI, model: type, **where: object) -> list:
    async with app.state.runtime.sessionmaker() as session:
        query = select(model).filter_by(**where)
        return list((await session.scalars(query)).all())


def intent(sub_id: str, side: Side, key: str) -> OrderIntent:
    return OrderIntent(sub_id, side, intent_key=key, decision_id=None, reason="test")


def test_client_order_ids_are_safe_and_stable() -> None:
    order_id = client_order_id("a" * 32, "b" * 32)
    assert order_id == client_order_id("a" * 32, "b" * 32) != client_order_id("a" * 32, "c")
    assert len(order_id) <= 36 and all(c.isalnum() or c in "-_" for c in order_id)


async def test_paper_buy_and_sell_are_exact_and_happen_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    executor: Executor,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    sub_id = await subscription(client, developer_key, marketplace_key, "paper")
    buy = await executor.execute(intent(sub_id, Side.BUY, "d1"))
    again = await executor.execute(intent(sub_id, Side.BUY, "d1"))
    assert again.id == buy.id and len(await rows(app, Trade, subscription_id=sub_id)) == 1
    assert buy.status == "filled" and buy.fee_asset == "BTC"
    assert buy.quote_quantity == buy.quantity * buy.price
    assert buy.fee == (buy.quantity * D("0.001")).quantize(D("1e-8"), "ROUND_UP")
    (position,) = await rows(app, Position, subscription_id=sub_id)
    assert position.quantity == buy.quantity - buy.fee
    assert position.quote_balance == D(100) * settings.paper_wallet_multiple - buy.quote_quantity

    sell = await executor.execute(intent(sub_id, Side.SELL, "d2"))
    assert sell.status == "filled" and sell.fee_asset == "USDT"
    assert sell.quantity == (position.quantity // D("0.00001")) * D("0.00001")
    assert sell.realized_pnl == (
        sell.quote_quantity - sell.fee - position.average_cost * sell.quantity
    ).quantize(D("1e-18"))
    nothing = await executor.execute(intent(sub_id, Side.SELL, "d3"))
    assert nothing.status == "refused" and "under the minimum" in (nothing.reason or "")


async def test_paper_fill_formula(executor: Executor) -> None:
    rules = await executor._attempts.clients.rules("BTCUSDT")  # the sandbox's real exchangeInfo
    fill = paper_fill(Side.BUY, D("0.00166"), D("60000.00"), D("0.0005"), rules)
    assert (fill.price, fill.fee) == (D("60030.00"), D("0.00000166"))
    # 61234.56 x 1.0005 = 61265.17728: a buy fills on the next tick up, a sell on the one down
    buy = paper_fill(Side.BUY, D("0.001"), D("61234.56"), D("0.0005"), rules)
    sell = paper_fill(Side.SELL, D("0.001"), D("61234.56"), D("0.0005"), rules)
    assert (buy.price, buy.quote_quantity) == (D("61265.18"), D("61.26518"))
    assert (sell.price, sell.quote_quantity) == (D("61203.94"), D("61.20394"))


async def test_executed_but_answered_5xx_then_retry_makes_one_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    executor: Executor,
    clock: Clock,
    settings: Settings,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    keys = sandbox.new_account(USDT="1000")
    sub_id = await subscription(client, developer_key, marketplace_key, "testnet", keys)
    sandbox.admin("POST", "/sandbox/faults", json={"executed_then_5xx_next": 1})
    with pytest.raises(UnknownOutcome):
        await executor.execute(intent(sub_id, Side.BUY, "decision-1"))
    (pending,) = await rows(app, Trade, subscription_id=sub_id)
    assert pending.status == "unknown"
    assert len(sandbox.orders(keys[0])) == 1  # the order did happen
    # Until the lease runs out, the exchange could still be executing it: nobody may resend.
    with pytest.raises(AttemptInFlight):
        await executor.execute(intent(sub_id, Side.BUY, "decision-1"))

    clock.advance(settings.order_lease_s + 1)
    retried = await executor.execute(intent(sub_id, Side.BUY, "decision-1"))
    assert retried.id == pending.id and retried.status == "filled"
    orders = sandbox.orders(keys[0])
    assert len(orders) == 1 and orders[0]["clientOrderId"] == retried.client_order_id
    assert retried.exchange_order_id == str(orders[0]["orderId"])
    assert retried.fee == D(orders[0]["fills"][0]["commission"])
    async with app.state.runtime.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Trade))
    assert count == 1


async def test_testnet_buy_sell_and_exchange_rejections(
    app: FastAPI,
    client: httpx.AsyncClient,
    executor: Executor,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    keys = sandbox.new_account(USDT="1000")
    sub_id = await subscription(client, developer_key, marketplace_key, "testnet", keys)
    buy = await executor.execute(intent(sub_id, Side.BUY, "b"))
    sell = await executor.execute(intent(sub_id, Side.SELL, "s"))
    assert (buy.status, sell.status) == ("filled", "filled")
    assert len(sandbox.orders(keys[0])) == 2
    poor = sandbox.new_account(USDT="1")
    poor_sub = await subscription(client, developer_key, marketplace_key, "testnet", poor)
    refused = await executor.execute(intent(poor_sub, Side.BUY, "x"))
    assert refused.status == "rejected" and "insufficient balance" in (refused.reason or "")


async def test_credentials_deleted_after_the_chunk_read_them_refuse_the_order(
    app: FastAPI,
    client: httpx.AsyncClient,
    executor: Executor,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # An execute chunk reads its renters once; one may delete its keys before its turn.
    keys = sandbox.new_account(USDT="1000")
    sub_id = await subscription(client, developer_key, marketplace_key, "testnet", keys)
    (read_before,) = await rows(app, Subscription, id=sub_id)
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(delete(ExchangeCredential))
        await session.commit()
    refused = await executor.execute(intent(sub_id, Side.BUY, "b"), None, read_before)
    assert refused.status == "refused" and "no exchange credentials" in (refused.reason or "")
    assert sandbox.orders(keys[0]) == []
