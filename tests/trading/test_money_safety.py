"""Money safety, in process: orders sent at most once, never stale, always resolved; wallets
exact. (tests/workers/test_faults.py proves the same through real, killed worker processes.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.errors import UnknownOutcome
from app.integrations.binance.filters import OrderTooSmall
from app.integrations.binance.governor import InProcessGovernor
from app.models import AuditLog, Decision, Position, Subscription, Trade
from app.subscriptions.flows import SubscriptionFlows
from app.trading.execution import Executor, OrderIntent, client_order_id
from app.trading.fills import Side, buy_quantity, paper_fill
from app.trading.flows import DueGroup, TradingFlows
from app.trading.market_data import last_closed_open_ms
from tests.helpers import Clock
from tests.integrations.binance.test_filters import rules_for
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import Queue, decision, make_bot, subscribe
from tests.trading.test_execution import rows, subscription

D = Decimal


@pytest.fixture
def clock() -> Clock:
    # Real time: these decisions are on the sandbox's current candles.
    return Clock.real()


@pytest.fixture(autouse=True)
def fresh_for_a_whole_candle(settings: Settings) -> None:
    # These renters trade 1h candles: let a decision stay fresh until the next one closes,
    # whenever in the hour the test runs.
    settings.order_freshness_cap_s = 3600


@pytest.fixture
async def make_executor(
    app: FastAPI, settings: Settings, sandbox: SandboxServer, clock: Clock
) -> AsyncIterator[Callable[[InProcessGovernor], Executor]]:
    """Executors as separate worker processes have them: each its own clients and governor."""
    opened: list[BinanceClients] = []

    def make(governor: InProcessGovernor) -> Executor:
        clients = BinanceClients(
            governor,
            api_url=sandbox.url,
            rules_ttl_s=300,
            idle_s=300,
            recv_window_ms=settings.binance_recv_window_ms,
        )
        opened.append(clients)
        runtime = app.state.runtime
        return Executor(runtime.sessionmaker, clients, runtime.keyring, settings, clock)

    yield make
    for clients in opened:
        await clients.close()


def latest_candle(clock: Clock, timeframe: str = "1h") -> datetime:
    return datetime.fromtimestamp(last_closed_open_ms(timeframe, clock.now) / 1000, UTC)


async def unknown_testnet_buy(
    app: FastAPI,
    client: httpx.AsyncClient,
    flow: TradingFlows,
    clock: Clock,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> tuple[str, tuple[str, str]]:
    """A testnet renter's BUY that the exchange executed but answered 5xx: its outcome is
    unknown to us. The subscription and the renter's sandbox keys."""
    keys = sandbox.new_account(USDT="1000")
    sub = await subscription(client, developer_key, marketplace_key, "testnet", keys)
    decided = await decision(app, sub, "BUY", candle=latest_candle(clock))
    sandbox.admin("POST", "/sandbox/faults", json={"executed_then_5xx_next": 1})
    with pytest.raises(UnknownOutcome):
        await flow.execute(decided, [sub])
    return sub, keys


@pytest.mark.parametrize("mode", ["paper", "testnet"])
async def test_a_stale_decision_is_refused_and_never_sent(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    clock: Clock,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
    mode: str,
) -> None:
    flow, _ = flows
    keys = sandbox.new_account(USDT="1000")
    sub = await subscription(
        client, developer_key, marketplace_key, mode, keys if mode == "testnet" else None
    )
    # A 1h decision is fresh until the next candle closes: one two candles older is not.
    old = await decision(app, sub, "BUY", candle=latest_candle(clock) - timedelta(hours=2))
    (stale,) = await flow.execute(old, [sub])
    assert stale.status == "refused" and "stale" in (stale.reason or "")
    assert stale.quantity is None and sandbox.orders(keys[0]) == []
    fresh = await decision(app, sub, "BUY", candle=latest_candle(clock))
    (sent,) = await flow.execute(fresh, [sub])
    assert sent.status == "filled"
    assert len(sandbox.orders(keys[0])) == (1 if mode == "testnet" else 0)
    (position,) = await rows(app, Position, subscription_id=sub)
    assert position.quantity == sent.quantity - sent.fee  # the stale order moved nothing


async def test_two_workers_racing_one_paper_order_fill_it_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_executor: Callable[[InProcessGovernor], Executor],
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # A paper order is written in one transaction, with no fence: the unique attempt decides.
    sub = await subscription(client, developer_key, marketplace_key, "paper")
    first, second = make_executor(InProcessGovernor(6000)), make_executor(InProcessGovernor(6000))
    order = OrderIntent(sub, Side.BUY, "decision-1", None, "test")
    one, other = await asyncio.gather(first.execute(order), second.execute(order))
    assert one.id == other.id and one.status == other.status == "filled"
    assert len(await rows(app, Trade, subscription_id=sub)) == 1
    (position,) = await rows(app, Position, subscription_id=sub)
    assert position.quantity == one.quantity - one.fee
    assert position.quote_balance == D(100) * settings.paper_wallet_multiple - one.quote_quantity
    actions = [a.action for a in await rows(app, AuditLog, resource_id=one.id)]
    assert sorted(actions) == ["order.attempt", "order.filled"]


async def test_two_first_paper_orders_at_once_both_come_out_of_one_wallet(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_executor: Callable[[InProcessGovernor], Executor],
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # Both find no position and create one: the loser of that race goes the fenced way.
    sub = await subscription(client, developer_key, marketplace_key, "paper")
    first, second = make_executor(InProcessGovernor(6000)), make_executor(InProcessGovernor(6000))
    buys = await asyncio.gather(
        first.execute(OrderIntent(sub, Side.BUY, "b1", None, "test")),
        second.execute(OrderIntent(sub, Side.BUY, "b2", None, "test")),
    )
    assert [b.status for b in buys] == ["filled", "filled"]
    (position,) = await rows(app, Position, subscription_id=sub)
    assert position.quantity == sum(b.quantity - b.fee for b in buys)
    assert position.quote_balance == D(100) * settings.paper_wallet_multiple - sum(
        b.quote_quantity for b in buys
    )


async def test_a_chunk_meeting_an_abandoned_attempt_fills_every_renter_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    clock: Clock,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # A chunk's paper orders are filled a batch (here 2) to a transaction; one renter's
    # attempt left pending by a crashed worker makes its batch fail, and each renter of that
    # batch is then done on its own: that attempt is taken over once its lease is over, the
    # others (of its batch and of the next) are filled, nobody twice.
    flow, _ = flows
    bot = await make_bot(client, developer_key)
    subs = [await subscribe(client, marketplace_key, bot) for _ in range(3)]
    buy = await decision(app, subs[0], "BUY", candle=latest_candle(clock))
    async with app.state.runtime.sessionmaker() as session:
        session.add(
            Trade(
                subscription_id=subs[1],
                decision_id=buy,
                client_order_id=client_order_id(subs[1], buy),
                mode="paper",
                symbol="BTCUSDT",
                side="BUY",
                status="pending",
                fence=1,
                lease_until=clock.now - timedelta(seconds=1),
                requested_quote=D(100),
                reason="decision BUY",
            )
        )
        await session.commit()
    trades = await flow.execute(buy, subs)
    assert [t.status for t in trades if t is not None] == ["filled"] * 3
    taken = trades[1]
    assert taken is not None and taken.fence == 2
    for sub, trade in zip(subs, trades, strict=True):
        assert trade is not None and trade.subscription_id == sub
        assert len(await rows(app, Trade, subscription_id=sub)) == 1
        (position,) = await rows(app, Position, subscription_id=sub)
        assert position.quantity == trade.quantity - trade.fee
        assert position.quote_balance == (
            D(100) * settings.paper_wallet_multiple - trade.quote_quantity
        )


async def test_an_owner_parked_in_the_governor_past_its_lease_sends_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_executor: Callable[[InProcessGovernor], Executor],
    clock: Clock,
    settings: Settings,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    keys = sandbox.new_account(USDT="1000")
    sub = await subscription(client, developer_key, marketplace_key, "testnet", keys)
    banned = InProcessGovernor(6000)
    parked, taker = make_executor(banned), make_executor(InProcessGovernor(6000))
    order = OrderIntent(sub, Side.BUY, "decision-1", None, "test")
    await banned.block_for(3)  # a 418 ban: every exchange call of that process waits
    first = asyncio.create_task(parked.execute(order))
    while not await rows(app, Trade, subscription_id=sub):  # noqa: ASYNC110 - another task's row
        await asyncio.sleep(0.05)
    clock.advance(settings.order_lease_s + 1)
    taken = await taker.execute(order)  # asks the exchange (nothing there), then sends
    assert taken.status == "filled"
    woken = await first  # its fence is gone: it must not send again, nor record twice
    assert woken.id == taken.id and woken.status == "filled"
    assert len(sandbox.orders(keys[0])) == 1
    (position,) = await rows(app, Position, subscription_id=sub)
    assert position.quantity == taken.quantity - taken.fee


async def test_the_reconciler_resolves_an_unknown_order_after_its_lease(
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
    sub, keys = await unknown_testnet_buy(
        app, client, flow, clock, sandbox, developer_key, marketplace_key
    )
    # Within the lease the exchange may still be executing it: nobody touches it.
    assert (await flow.reconcile(clock.now)).attempts_resolved == 0
    clock.advance(settings.order_lease_s + 1)
    assert (await flow.reconcile(clock.now)).attempts_resolved == 1
    (trade,) = await rows(app, Trade, subscription_id=sub)
    (order,) = sandbox.orders(keys[0])
    assert trade.status == "filled" and trade.exchange_order_id == str(order["orderId"])
    assert (await flow.reconcile(clock.now)).attempts_resolved == 0


async def test_orders_of_a_decision_whose_execute_jobs_were_lost_are_placed(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    clock: Clock,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, queue = flows
    bot = await make_bot(client, developer_key)
    subs = [await subscribe(client, marketplace_key, bot) for _ in range(3)]
    async with app.state.runtime.sessionmaker() as session:
        version_id = (await session.get(Subscription, subs[0])).bot_version_id
    queue.broken = True  # the broker is down right after the decision commits
    group = DueGroup(version_id, "BTCUSDT", "1h", clock.now)
    failed = (await flow.decide([group])).failed
    assert isinstance(failed[group], ConnectionError)
    assert await rows(app, Trade) == []
    # Its execute jobs may still be on their way for a lease; after that, they are lost.
    (made,) = await rows(app, Decision)
    clock.now = made.created_at
    assert (await flow.reconcile(clock.now)).orders_recovered == 0
    clock.advance(settings.order_lease_s + 1)
    assert (await flow.reconcile(clock.now)).orders_recovered == 3
    trades = await rows(app, Trade)
    assert sorted(t.subscription_id for t in trades) == sorted(subs)
    assert {t.status for t in trades} == {"filled"}
    assert (await flow.reconcile(clock.now)).orders_recovered == 0


@pytest.mark.parametrize("mode", ["paper", "testnet"])
async def test_an_exit_racing_a_sell_decision_sells_the_position_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_executor: Callable[[InProcessGovernor], Executor],
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
    mode: str,
) -> None:
    keys = sandbox.new_account(USDT="1000") if mode == "testnet" else None
    sub = await subscription(client, developer_key, marketplace_key, mode, keys)
    # Two processes: the decision's worker and the protective exit's.
    deciding, protecting = (
        make_executor(InProcessGovernor(6000)),
        make_executor(InProcessGovernor(6000)),
    )
    bought = await deciding.execute(OrderIntent(sub, Side.BUY, "buy", None, "test"))
    assert bought.status == "filled"
    sells = await asyncio.gather(
        deciding.execute(OrderIntent(sub, Side.SELL, "decision-sell", None, "decision SELL")),
        protecting.execute(OrderIntent(sub, Side.SELL, "exit-1", None, "stop-loss")),
    )
    assert sorted(s.status for s in sells) == ["filled", "refused"]
    (position,) = await rows(app, Position, subscription_id=sub)
    assert D(0) <= position.quantity < bought.quantity
    if keys is None:
        assert position.quote_balance >= 0  # the paper wallet
    else:
        assert len(sandbox.orders(keys[0])) == 2


async def test_a_paper_wallet_spent_to_the_last_cent_never_goes_negative(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_executor: Callable[[InProcessGovernor], Executor],
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # The wallet is exactly one order's quote amount: every buy is sized against it.
    settings.paper_wallet_multiple = D(1)
    sub = await subscription(client, developer_key, marketplace_key, "paper", quote_amount="10")
    executor = make_executor(InProcessGovernor(6000))
    first = await executor.execute(OrderIntent(sub, Side.BUY, "b1", None, "test"))
    second = await executor.execute(OrderIntent(sub, Side.BUY, "b2", None, "test"))
    assert first.status == "filled" and second.status == "refused"
    async with app.state.runtime.sessionmaker() as session:
        position = await session.scalar(select(Position).where(Position.subscription_id == sub))
    assert position is not None and D(0) <= position.quote_balance < D(10)


@given(
    budget=st.decimals(min_value=D(5), max_value=D(100000), places=8),
    price=st.decimals(min_value=D(1), max_value=D(200000), places=2),
    slippage=st.decimals(min_value=D(0), max_value=D("0.05"), places=4),
)
def test_a_sized_buy_never_spends_more_than_its_budget(
    budget: Decimal, price: Decimal, slippage: Decimal
) -> None:
    rules = rules_for(tick="0.01", step="0.00001", min_qty="0.00001", min_notional="5")
    try:
        quantity = buy_quantity(budget, price, slippage, rules)
    except OrderTooSmall:
        return  # too small to buy at all: nothing is spent
    fill = paper_fill(Side.BUY, quantity, price, slippage, rules)
    assert fill.quote_quantity <= budget


async def test_a_failed_expiry_sale_keeps_the_subscription_expiring_until_resolved(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows: tuple[TradingFlows, Queue],
    subscription_flows: SubscriptionFlows,
    clock: Clock,
    settings: Settings,
    sandbox: SandboxServer,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    keys = sandbox.new_account(USDT="1000")
    sub = await subscription(client, developer_key, marketplace_key, "testnet", keys)
    (bought,) = await flow.execute(
        await decision(app, sub, "BUY", candle=latest_candle(clock)), [sub]
    )
    assert bought.status == "filled"
    async with app.state.runtime.sessionmaker() as session:
        row = await session.get(Subscription, sub)
        row.ends_at = clock.now - timedelta(minutes=1)
        await session.commit()
    # The sale is executed, but its answer is a 503: its outcome is unknown to us.
    sandbox.admin("POST", "/sandbox/faults", json={"executed_then_5xx_next": 1})
    assert await subscription_flows.expire(clock.now) == []
    async with app.state.runtime.sessionmaker() as session:
        assert (await session.get(Subscription, sub)).status == "expiring"
    clock.advance(settings.order_lease_s + 1)
    outcome = await flow.reconcile(clock.now)
    assert (outcome.attempts_resolved, outcome.expiries_finished) == (1, 1)
    async with app.state.runtime.sessionmaker() as session:
        assert (await session.get(Subscription, sub)).status == "expired"
    sale = next(t for t in await rows(app, Trade, subscription_id=sub) if t.side == "SELL")
    assert sale.status == "filled" and len(sandbox.orders(keys[0])) == 2
