"""Every state change writes its event in its own transaction, through the real paths (the
API, the trading and subscription flows on the sandbox and the fake LLMs): the change commits
with exactly one event that says what a UI shows, and when the change's transaction fails
after the event was written, neither the change nor the event is there."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine, Insert, event, select, update
from sqlalchemy.engine.default import DefaultExecutionContext

from app.backtests.flows import BacktestFlows
from app.events.types import EventType
from app.models import (
    Backtest,
    Decision,
    DecisionClaim,
    Event,
    PerformanceLog,
    Position,
    Subscription,
    Trade,
)
from app.subscriptions.flows import SubscriptionFlows
from app.trading.execution import Executor, OrderIntent
from app.trading.fills import Side
from app.trading.flows import TradingFlows
from tests.backtests.conftest import make_bot as make_replayed_bot
from tests.backtests.conftest import start
from tests.helpers import headers, new_principal
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import NOW, Queue, count, decision, make_bot, subscribe, trade_of

Flows = tuple[TradingFlows, Queue]


class DatabaseFailed(Exception):
    """The commit of the change failed after its event was written."""


@contextmanager
def commit_fails(type: EventType) -> Iterator[None]:
    """Every transaction that writes an event of `type` fails right after writing it, as a
    database that goes away mid-transaction would make it."""

    def fail(*args: Any) -> None:
        context: DefaultExecutionContext = args[4]
        statement = context.compiled.statement if context.compiled else None
        if isinstance(statement, Insert) and statement.table.name == Event.__tablename__:
            if any(row["type"] == type.value for row in context.compiled_parameters):
                raise DatabaseFailed(type.value)

    event.listen(Engine, "after_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(Engine, "after_cursor_execute", fail)


async def fails(work: Awaitable[object]) -> None:
    """The change failed: raised, or answered 500 by the API."""
    try:
        outcome = await work
    except DatabaseFailed:
        return
    assert isinstance(outcome, httpx.Response) and outcome.status_code == 500, outcome


async def events_of(app: FastAPI, type: EventType) -> list[Event]:
    async with app.state.runtime.sessionmaker() as session:
        query = select(Event).where(Event.type == type.value).order_by(Event.occurred_at)
        return list((await session.scalars(query)).all())


async def one_event(app: FastAPI, type: EventType, **expected: Any) -> Event:
    (only,) = await events_of(app, type)
    assert {key: only.data.get(key) for key in expected} == expected, only.data
    return only


async def lease_runs_out(app: FastAPI, model: type[DecisionClaim] | type[Backtest]) -> None:
    """The failed worker's lease ends, so the next attempt takes its work at once."""
    column = model.expires_at if model is DecisionClaim else model.lease_until
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(model).values({column: NOW - timedelta(days=30)}))
        await session.commit()


async def status_of(app: FastAPI, sub_id: str) -> str:
    async with app.state.runtime.sessionmaker() as session:
        sub = await session.get(Subscription, sub_id)
    assert sub is not None
    return sub.status


async def test_a_subscription_created_paused_resumed_cancelled(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    bot = await make_bot(client, developer_key)
    principal = new_principal()
    renter = headers(marketplace_key, principal)
    body = {
        "bot_id": bot["id"],
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "paper",
        "quote_amount": "100",
    }
    with commit_fails(EventType.subscription_created):
        await fails(client.post("/api/v1/subscriptions", json=body, headers=renter))
    assert (
        await count(app, Subscription) == 0
        and await events_of(app, EventType.subscription_created) == []
    )

    created = await client.post("/api/v1/subscriptions", json=body, headers=renter)
    sub_id = created.json()["id"]
    event_row = await one_event(
        app, EventType.subscription_created, status="active", symbol="BTCUSDT", quote_amount="100"
    )
    assert (event_row.principal, event_row.subscription_id, event_row.bot_id) == (
        principal,
        sub_id,
        bot["id"],
    )

    async def move(status: str) -> object:
        return await client.patch(
            f"/api/v1/subscriptions/{sub_id}", json={"status": status}, headers=renter
        )

    with commit_fails(EventType.subscription_paused):
        await fails(move("paused"))
    assert await status_of(app, sub_id) == "active"
    for status, type in [
        ("paused", EventType.subscription_paused),
        ("active", EventType.subscription_resumed),
        ("cancelled", EventType.subscription_cancelled),
    ]:
        assert (await move(status)).status_code == 200  # type: ignore[attr-defined]
        await one_event(app, type, status=status, reason=None)


async def test_deleted_credentials_pause_their_subscriptions(
    app: FastAPI,
    client: httpx.AsyncClient,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    renter = headers(marketplace_key, new_principal())
    api_key, secret = sandbox.new_account(USDT="1000")
    await client.put(
        "/api/v1/credentials/binance",
        json={"api_key": api_key, "api_secret": secret, "testnet": True},
        headers=renter,
    )
    bot = await make_bot(client, developer_key)
    body = {"bot_id": bot["id"], "symbol": "BTCUSDT", "timeframe": "1h", "mode": "testnet"}
    created = await client.post(
        "/api/v1/subscriptions", json={**body, "quote_amount": "100"}, headers=renter
    )
    sub_id = created.json()["id"]
    with commit_fails(EventType.subscription_paused):
        await fails(client.delete("/api/v1/credentials/binance", headers=renter))
    assert await status_of(app, sub_id) == "active"
    assert (await client.delete("/api/v1/credentials/binance", headers=renter)).status_code == 204
    paused = await one_event(
        app,
        EventType.subscription_paused,
        status="paused",
        reason="exchange credentials were deleted",
    )
    assert paused.subscription_id == sub_id
    assert secret not in str(paused.data) and api_key not in str(paused.data)


async def test_a_decision_made_and_a_budget_exhausted_once_a_day(
    app: FastAPI, client: httpx.AsyncClient, flows: Flows, developer_key: str, marketplace_key: str
) -> None:
    flow, _ = flows
    bot = await make_bot(client, developer_key, llm_daily_budget_usd="0.000001")
    await subscribe(client, marketplace_key, bot)
    groups = await flow.dispatch(NOW)
    with commit_fails(EventType.decision_made):
        decided = await flow.decide(groups)
    assert isinstance(next(iter(decided.failed.values())), DatabaseFailed)
    await lease_runs_out(app, DecisionClaim)
    assert (
        await count(app, Decision) == 0 and await events_of(app, EventType.budget_exhausted) == []
    )

    (made,) = (await flow.decide(groups)).decisions
    told = await one_event(
        app,
        EventType.decision_made,
        decision_id=made.id,
        bot_id=bot["id"],
        action=made.action,
        symbol="BTCUSDT",
        timeframe="1h",
        candle_open_at="2026-11-20T11:00:00Z",
        votes=[],  # over budget: no LLM asked
    )
    assert (told.bot_id, told.principal, told.user_id, told.subscription_id) == (
        bot["id"],
        None,
        None,
        None,
    )
    await one_event(
        app, EventType.budget_exhausted, bot_id=bot["id"], day="2026-11-20", decision_id=made.id
    )
    # A later decision of the same day falls back too, and is not told again.
    (later,) = (await flow.decide(await flow.dispatch(NOW + timedelta(hours=1)))).decisions
    assert "daily LLM budget" in (later.fallback_reason or "")
    assert len(await events_of(app, EventType.decision_made)) == 2
    assert len(await events_of(app, EventType.budget_exhausted)) == 1


async def test_a_decision_tells_its_votes(
    app: FastAPI, client: httpx.AsyncClient, flows: Flows, developer_key: str, marketplace_key: str
) -> None:
    flow, _ = flows
    await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    (made,) = (await flow.decide(await flow.dispatch(NOW))).decisions
    (vote,) = (await one_event(app, EventType.decision_made, action=made.action)).data["votes"]
    assert vote["provider"] == "openai" and vote["model"] == "gpt-4o-mini"
    assert vote["action"] == "BUY" and Decimal(vote["confidence"]) > 0


async def test_paper_fills_open_and_close_a_position(
    app: FastAPI, client: httpx.AsyncClient, flows: Flows, developer_key: str, marketplace_key: str
) -> None:
    flow, _ = flows
    sub = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    buy = await decision(app, sub, "BUY")
    with commit_fails(EventType.trade_filled):
        await fails(flow.execute(buy, [sub]))
    assert await count(app, Trade) == 0 and await events_of(app, EventType.position_opened) == []

    await flow.execute(buy, [sub])
    bought = await trade_of(app, buy)
    await one_event(
        app,
        EventType.trade_filled,
        trade_id=bought.id,
        client_order_id=bought.client_order_id,
        decision_id=buy,
        side="BUY",
        mode="paper",
        symbol="BTCUSDT",
        quantity=str(bought.quantity.normalize()),
        price=str(bought.price.normalize()),
        fee=str(bought.fee.normalize()),
        fee_asset="BTC",
        realized_pnl=None,
    )
    await one_event(app, EventType.position_opened, trade_id=bought.id)

    sell = await decision(app, sub, "SELL", 1)
    with commit_fails(EventType.position_closed):
        await fails(flow.execute(sell, [sub]))
    assert await count(app, Trade, side="SELL") == 0
    await flow.execute(sell, [sub])
    sold = await trade_of(app, sell)
    assert sold.realized_pnl is not None
    closed = await one_event(
        app,
        EventType.position_closed,
        trade_id=sold.id,
        realized_pnl=format(sold.realized_pnl.normalize(), "f"),
    )
    assert closed.subscription_id == sub
    assert len(await events_of(app, EventType.trade_filled)) == 2


async def test_a_stale_order_and_a_risk_refusal_are_refused(
    app: FastAPI, client: httpx.AsyncClient, flows: Flows, developer_key: str, marketplace_key: str
) -> None:
    flow, _ = flows
    bot = await make_bot(client, developer_key)
    sub = await subscribe(client, marketplace_key, bot, risk={"max_trades_per_day": 1})
    stale = await decision(app, sub, "BUY", candle=NOW - timedelta(days=2))
    with commit_fails(EventType.trade_refused):
        await fails(flow.execute(stale, [sub]))
    assert await count(app, Trade) == 0
    await flow.execute(stale, [sub])
    told = await one_event(app, EventType.trade_refused, decision_id=stale, side="BUY")
    assert "stale" in told.data["reason"]

    await flow.execute(await decision(app, sub, "BUY", 1), [sub])
    capped = await decision(app, sub, "BUY", 2)
    await flow.execute(capped, [sub])
    refusals = await events_of(app, EventType.trade_refused)
    assert [e.data["decision_id"] for e in refusals] == [stale, capped]
    assert "max trades per day" in refusals[1].data["reason"]


async def test_an_exchange_rejection_is_a_failed_trade(
    app: FastAPI,
    client: httpx.AsyncClient,
    trading_executor: Executor,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    sub = await subscribe_testnet(client, sandbox, developer_key, marketplace_key, USDT="1")
    order = OrderIntent(sub, Side.BUY, "b", None, "test")
    with commit_fails(EventType.trade_failed):
        await fails(trading_executor.execute(order))
    assert await count(app, Trade, status="rejected") == 0
    # The failed transaction left its attempt sent and leased: a new one goes instead.
    rejected = await trading_executor.execute(replace(order, intent_key="again"))
    assert rejected.status == "rejected"
    told = await one_event(app, EventType.trade_failed, trade_id=rejected.id, mode="testnet")
    assert "insufficient balance" in told.data["reason"]


async def subscribe_testnet(
    client: httpx.AsyncClient,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
    secret: str | None = None,
    **balances: str,
) -> str:
    """A testnet subscription on a new sandbox account (`secret`: stored instead of its own)."""
    renter = headers(marketplace_key, new_principal())
    api_key, own_secret = sandbox.new_account(**balances)
    await client.put(
        "/api/v1/credentials/binance",
        json={"api_key": api_key, "api_secret": secret or own_secret, "testnet": True},
        headers=renter,
    )
    bot = await make_bot(client, developer_key)
    body = {"bot_id": bot["id"], "symbol": "BTCUSDT", "timeframe": "1h", "mode": "testnet"}
    created = await client.post(
        "/api/v1/subscriptions", json={**body, "quote_amount": "100"}, headers=renter
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_key_the_exchange_refuses_pauses_its_subscriptions(
    app: FastAPI,
    client: httpx.AsyncClient,
    trading_executor: Executor,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # The sandbox verifies the HMAC signature: a wrong secret is an auth error.
    sub = await subscribe_testnet(
        client, sandbox, developer_key, marketplace_key, "not-the-secret", USDT="1000"
    )
    order = OrderIntent(sub, Side.BUY, "b", None, "test")
    with commit_fails(EventType.credentials_invalid):
        await fails(trading_executor.execute(order))
    assert await status_of(app, sub) == "active"
    rejected = await trading_executor.execute(replace(order, intent_key="again"))
    assert rejected.status == "rejected"
    assert await status_of(app, sub) == "paused"
    told = await one_event(app, EventType.credentials_invalid, status="paused")
    assert told.subscription_id == sub and "refused the stored credentials" in told.data["reason"]
    assert "not-the-secret" not in str(told.data)
    await one_event(app, EventType.trade_failed, trade_id=rejected.id)


async def test_a_stop_loss_triggers_an_exit(
    app: FastAPI, client: httpx.AsyncClient, flows: Flows, developer_key: str, marketplace_key: str
) -> None:
    flow, _ = flows
    sub = await subscribe(
        client, marketplace_key, await make_bot(client, developer_key), risk={"stop_loss_pct": "5"}
    )
    await flow.execute(await decision(app, sub, "BUY"), [sub])
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(Position).values(average_cost=Decimal(10**9)))
        await session.commit()
    with commit_fails(EventType.exit_triggered):
        await fails(flow.protect(NOW))
    assert await count(app, Trade, side="SELL") == 0
    (sold,) = await flow.protect(NOW)
    told = await one_event(app, EventType.exit_triggered, reason="stop_loss", trade_id=sold.id)
    assert told.data["detail"].startswith("stop-loss 5%")
    await one_event(app, EventType.position_closed, trade_id=sold.id)


async def test_expiry_tells_expiring_the_exit_and_expired(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: Flows,
    subscription_flows: SubscriptionFlows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    sub = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    await flow.execute(await decision(app, sub, "BUY"), [sub])
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(Subscription).values(ends_at=NOW - timedelta(minutes=1)))
        await session.commit()
    with commit_fails(EventType.subscription_expiring):
        await fails(subscription_flows.expire(NOW))
    assert await status_of(app, sub) == "active"
    with commit_fails(EventType.subscription_expired):
        await fails(subscription_flows.expire(NOW))
    assert await status_of(app, sub) == "expiring"
    await one_event(app, EventType.exit_triggered, reason="expiry")
    await one_event(
        app, EventType.subscription_expiring, status="expiring", reason="ends_at passed"
    )
    assert await events_of(app, EventType.subscription_expired) == []
    assert await subscription_flows.finish_expiry(sub)
    await one_event(app, EventType.subscription_expired, status="expired")


async def test_a_drawdown_breach_is_a_risk_pause(
    app: FastAPI, client: httpx.AsyncClient, flows: Flows, developer_key: str, marketplace_key: str
) -> None:
    flow, _ = flows
    bot = await make_bot(client, developer_key)
    sub = await subscribe(client, marketplace_key, bot, risk={"max_drawdown_pct": "5"})
    async with app.state.runtime.sessionmaker() as session:
        session.add(
            PerformanceLog(
                subscription_id=sub,
                recorded_at=NOW,
                equity=Decimal(900),
                realized_pnl=Decimal(-100),
                unrealized_pnl=Decimal(0),
            )
        )
        await session.commit()
    buy = await decision(app, sub, "BUY")
    with commit_fails(EventType.risk_paused):
        await fails(flow.execute(buy, [sub]))
    assert await status_of(app, sub) == "active"
    await flow.execute(buy, [sub])
    assert await status_of(app, sub) == "paused"
    told = await one_event(app, EventType.risk_paused, status="paused", limit="max_drawdown")
    assert "max drawdown of 5% breached" in told.data["reason"]
    await one_event(app, EventType.trade_refused, decision_id=buy)


async def test_a_finished_backtest_is_told_to_its_bot(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    runs, _ = backtests
    bot = await make_replayed_bot(client, developer_key)
    backtest_id = (await start(client, bot, headers(developer_key))).json()["id"]
    with commit_fails(EventType.backtest_finished):
        await fails(runs.run(backtest_id))
    view = await client.get(f"/api/v1/backtests/{backtest_id}", headers=headers(developer_key))
    assert view.json()["status"] == "running"
    await lease_runs_out(app, Backtest)
    await runs.run(backtest_id)
    view = await client.get(f"/api/v1/backtests/{backtest_id}", headers=headers(developer_key))
    result = view.json()
    told = await one_event(
        app,
        EventType.backtest_finished,
        backtest_id=backtest_id,
        bot_id=bot["id"],
        status="succeeded",
        total_return=result["result"]["metrics"]["total_return"],
    )
    assert (told.bot_id, told.principal, told.user_id) == (bot["id"], None, None)
