"""The scheduled flows as services: dispatch, decide, execute with risk, protect, expire,
snapshot. Celery only wraps these (tests/workers run them through a real worker)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import empyrical
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update

from app.integrations.binance.errors import ExchangeError
from app.models import (
    Decision,
    DecisionClaim,
    Event,
    PerformanceLog,
    Position,
    Subscription,
    Trade,
)
from app.performance.flows import PerformanceFlows
from app.performance.service import max_drawdown_pct, sharpe
from app.subscriptions.flows import SubscriptionFlows
from app.trading import repository
from app.trading.decide import DecisionInFlight
from app.trading.execution import AttemptInFlight
from app.trading.flows import DueGroup, TradingFlows
from tests.fakes import RunningFakes
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import NOW, Queue, count, decision, make_bot, subscribe, trade_of


async def run_jobs(flows: TradingFlows, queue: Queue) -> None:
    """What the workers would do with the queue, in order."""
    while queue.jobs:
        name, kwargs = queue.jobs.pop(0)
        if name == "trading.decide":
            await flows.decide([DueGroup.from_job(g) for g in kwargs["groups"]])
        else:
            await flows.execute(kwargs["decision_id"], kwargs["subscription_ids"])


async def test_dispatch_decide_execute(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
    llm_fakes: RunningFakes,
) -> None:
    flow, queue = flows
    bot = await make_bot(client, developer_key)
    subs = [await subscribe(client, marketplace_key, bot) for _ in range(3)]
    other = await subscribe(client, marketplace_key, bot, symbol="ETHUSDT")
    groups = await flow.dispatch(NOW)
    assert {g.symbol for g in groups} == {"BTCUSDT", "ETHUSDT"}
    (batch,) = queue.named("trading.decide")
    assert {g["as_of"] for g in batch["groups"]} == {"2026-11-20T12:00:00+00:00"}
    btc = next(g for g in batch["groups"] if g["symbol"] == "BTCUSDT")
    queue.jobs.clear()
    await flow.decide([DueGroup.from_job(btc)])
    chunks = queue.named("trading.execute")
    assert sorted(len(c["subscription_ids"]) for c in chunks) == [1, 2]  # chunks of 2
    await run_jobs(flow, queue)
    # The BTC group is decided, the ETH group is not: the next dispatch asks for ETH only.
    assert [g.symbol for g in await flow.dispatch(NOW)] == ["ETHUSDT"]
    await run_jobs(flow, queue)
    assert await flow.dispatch(NOW) == []
    assert await count(app, Decision) == 2
    for sub in [*subs, other]:
        assert await count(app, Trade, subscription_id=sub, status="filled") == 1
    assert llm_fakes.openai.requests == 2  # one vote per decision, not per renter


async def test_a_chunk_reads_the_price_once_for_all_its_renters(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
    sandbox: SandboxServer,
) -> None:
    # Binance weight is per IP and shared by every renter: a ticker read per renter made
    # the weight of a tick grow with renters (issue 10); one read per chunk does not.
    flow, _ = flows
    bot = await make_bot(client, developer_key)
    subs = [await subscribe(client, marketplace_key, bot) for _ in range(3)]
    buy = await decision(app, subs[0], "BUY")
    before = sandbox.requests().get("GET /api/v3/ticker/price", 0)
    trades = await flow.execute(buy, subs)
    assert [t.status for t in trades if t is not None] == ["filled"] * 3
    assert sandbox.requests().get("GET /api/v3/ticker/price", 0) - before == 1


async def test_two_dispatchers_at_once_make_one_decision_per_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, queue = flows
    bot = await make_bot(client, developer_key)
    for _ in range(2):
        await subscribe(client, marketplace_key, bot)
    await asyncio.gather(flow.dispatch(NOW), flow.dispatch(NOW))
    batches = queue.named("trading.decide")
    assert len(batches) == 2  # both saw the candle undecided
    queue.jobs.clear()
    outcomes = await asyncio.gather(
        *(flow.decide([DueGroup.from_job(g) for g in b["groups"]]) for b in batches)
    )
    # A decide that met the decision in flight is told to retry it (Celery would), and its
    # retry finds the decision made.
    for outcome in outcomes:
        assert outcome.failed == {}
        if outcome.retry:
            assert all(isinstance(e, DecisionInFlight) for e in outcome.retry.values())
            assert (await flow.decide(list(outcome.retry))).retry == {}
    assert await count(app, Decision) == 1
    jobs = [k for _, k in queue.jobs]
    outcomes = await asyncio.gather(
        *(flow.execute(k["decision_id"], k["subscription_ids"]) for k in jobs),
        return_exceptions=True,
    )
    # A chunk that met an attempt in flight is told to retry (Celery would), and its retry
    # finds the order done.
    for job, outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, AttemptInFlight)
            await flow.execute(job["decision_id"], job["subscription_ids"])
    assert await count(app, Trade) == 2  # two chunks per decide, yet one order per renter


async def subscribe_to(
    client: httpx.AsyncClient, marketplace_key: str, bot: dict, renters: dict[str, int]
) -> dict[str, list[str]]:
    """`renters[symbol]` subscriptions to `bot` on each symbol: one group per symbol."""
    return {
        symbol: [await subscribe(client, marketplace_key, bot, symbol=symbol) for _ in range(n)]
        for symbol, n in renters.items()
    }


def executes_of(queue: Queue, decision_id: str) -> list[list[str]]:
    return [
        job["subscription_ids"]
        for job in queue.named("trading.execute")
        if job["decision_id"] == decision_id
    ]


async def test_dispatch_batches_the_groups_and_a_batch_decides_all_of_them(
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
    llm_fakes: RunningFakes,
) -> None:
    flow, queue = flows  # batches of 2 groups, chunks of 2 renters
    bot = await make_bot(client, developer_key)
    subs = await subscribe_to(
        client, marketplace_key, bot, {"BTCUSDT": 3, "ETHUSDT": 1, "BNBUSDT": 1}
    )
    await flow.dispatch(NOW)
    batches = queue.named("trading.decide")
    assert sorted(len(b["groups"]) for b in batches) == [1, 2]
    assert sorted(g["symbol"] for b in batches for g in b["groups"]) == sorted(subs)
    queue.jobs.clear()
    (pair,) = [
        [DueGroup.from_job(g) for g in b["groups"]] for b in batches if len(b["groups"]) == 2
    ]
    decided = await flow.decide(pair)
    assert decided.retry == {} and decided.failed == {}
    assert sorted(d.symbol for d in decided.decisions) == sorted(g.symbol for g in pair)
    for made in decided.decisions:
        chunks = executes_of(queue, made.id)
        assert all(len(chunk) <= 2 for chunk in chunks)
        assert sorted(s for chunk in chunks for s in chunk) == sorted(subs[made.symbol])
    assert llm_fakes.openai.requests == 2  # one round per group of the batch, none for the other


async def hold_claim(app: FastAPI, group: DueGroup) -> None:
    """Another process has claimed the group's decision and is making it."""
    async with app.state.runtime.sessionmaker() as session:
        await repository.add_claim(
            session,
            group.bot_version_id,
            group.symbol,
            group.timeframe,
            group.as_of - timedelta(hours=1),  # the 1h candle that closed at as_of
            datetime.now(UTC) + timedelta(minutes=5),
        )
        await session.commit()


async def test_a_group_failing_for_a_while_is_retried_alone(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
    llm_fakes: RunningFakes,
) -> None:
    flow, queue = flows
    bot = await make_bot(client, developer_key)
    subs = await subscribe_to(client, marketplace_key, bot, {"BTCUSDT": 1, "ETHUSDT": 1})
    await flow.dispatch(NOW)
    (batch,) = queue.named("trading.decide")
    groups = [DueGroup.from_job(g) for g in batch["groups"]]
    held = next(g for g in groups if g.symbol == "ETHUSDT")
    await hold_claim(app, held)
    queue.jobs.clear()
    first = await flow.decide(groups)
    assert list(first.retry) == [held] and isinstance(first.retry[held], DecisionInFlight)
    assert [d.symbol for d in first.decisions] == ["BTCUSDT"]
    assert executes_of(queue, first.decisions[0].id) == [subs["BTCUSDT"]]
    async with app.state.runtime.sessionmaker() as session:  # its owner died mid-round
        await session.execute(
            update(DecisionClaim).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    retried = await flow.decide(list(first.retry))
    assert [d.symbol for d in retried.decisions] == ["ETHUSDT"] and retried.retry == {}
    # Each decision's renters sent for execution once, and BTC's decision not made again.
    assert sorted(job["subscription_ids"] for job in queue.named("trading.execute")) == sorted(
        subs.values()
    )
    assert llm_fakes.openai.requests == 2
    assert await count(app, Decision) == 2


async def test_a_group_failing_for_good_is_logged_and_holds_up_none_of_its_batch(
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow, queue = flows
    bot = await make_bot(client, developer_key)
    sub = await subscribe(client, marketplace_key, bot)
    (group,) = await flow.dispatch(NOW)
    delisted = replace(group, symbol="NOPEUSDT")  # a symbol the exchange does not know
    queue.jobs.clear()
    decided = await flow.decide([delisted, group])
    assert list(decided.failed) == [delisted] and decided.retry == {}
    assert isinstance(decided.failed[delisted], ExchangeError)
    assert [d.symbol for d in decided.decisions] == ["BTCUSDT"]
    assert executes_of(queue, decided.decisions[0].id) == [[sub]]
    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (logged.getMessage(), logged.symbol) == ("decision failed", "NOPEUSDT")


@pytest.mark.parametrize(
    ("risk", "setup", "reason"),
    [
        ({"max_trades_per_day": 1}, "buy", "max trades per day"),
        ({"max_position_quote": "150"}, "buy", "position would exceed 150"),
        ({"daily_loss_limit_quote": "1"}, "loss", "daily loss limit of 1"),
        ({"cooldown_minutes_after_loss": 60}, "loss", "cooling down 60 min"),
        ({"max_drawdown_pct": "5"}, "drawdown", "max drawdown of 5% breached"),
    ],
)
async def test_each_risk_limit_refuses(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
    risk: dict,
    setup: str,
    reason: str,
) -> None:
    flow, _ = flows
    sub = await subscribe(client, marketplace_key, await make_bot(client, developer_key), risk=risk)
    if setup in ("buy", "loss"):
        await flow.execute(await decision(app, sub, "BUY", 0), [sub])
    if setup == "loss":
        async with app.state.runtime.sessionmaker() as session:  # the buy's price was higher
            await session.execute(update(Position).values(average_cost=Decimal(10**9)))
            await session.commit()
        sold = await flow.execute(await decision(app, sub, "SELL", 1), [sub])
        assert sold[0].status == "filled" and sold[0].realized_pnl < 0
    if setup == "drawdown":
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
    refused_id = await decision(app, sub, "BUY", 2)
    await flow.execute(refused_id, [sub])
    refused = await trade_of(app, refused_id)
    assert refused.status == "refused" and reason in (refused.reason or "")
    async with app.state.runtime.sessionmaker() as session:
        status = (await session.get(Subscription, sub)).status
    assert status == ("paused" if setup == "drawdown" else "active")


async def test_a_chunk_checks_each_renter_against_its_own_limits(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    # The facts of a chunk are read for all its renters at once: none may leak to another.
    flow, _ = flows
    bot = await make_bot(client, developer_key)
    capped = await subscribe(client, marketplace_key, bot, risk={"max_trades_per_day": 1})
    fresh = await subscribe(client, marketplace_key, bot, risk={"max_trades_per_day": 1})
    free = await subscribe(client, marketplace_key, bot)
    await flow.execute(await decision(app, capped, "BUY", 0), [capped])
    await flow.execute(await decision(app, free, "BUY", 1), [free])
    trades = await flow.execute(await decision(app, capped, "BUY", 2), [capped, fresh, free])
    assert [t.status for t in trades] == ["refused", "filled", "filled"]
    assert "max trades per day" in (trades[0].reason or "")


async def test_selling_with_no_position_does_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    sub = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    assert await flow.execute(await decision(app, sub, "SELL"), [sub]) == [None]
    assert await count(app, Trade) == 0


async def test_stop_loss_exits_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    sub = await subscribe(
        client, marketplace_key, await make_bot(client, developer_key), risk={"stop_loss_pct": "5"}
    )
    await flow.execute(await decision(app, sub, "BUY"), [sub])
    assert await flow.protect(NOW) == []  # the price has not moved 5%
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(Position).values(average_cost=Decimal(10**9)))
        await session.commit()
    (exit_trade,) = await flow.protect(NOW)
    assert exit_trade.side == "SELL" and exit_trade.status == "filled"
    assert (exit_trade.reason or "").startswith("stop-loss 5%")
    assert await flow.protect(NOW) == []  # flat now
    assert await count(app, Trade, subscription_id=sub) == 2


async def test_expiry_closes_the_position_when_the_bot_says_so(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    subscription_flows: SubscriptionFlows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    closing = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    keeping = await subscribe(
        client,
        marketplace_key,
        await make_bot(client, developer_key, close_position_on_expiry=False),
    )
    for sub in (closing, keeping):
        await flow.execute(await decision(app, sub, "BUY"), [sub])
    async with app.state.runtime.sessionmaker() as session:
        await session.execute(update(Subscription).values(ends_at=NOW - timedelta(minutes=1)))
        await session.commit()
    assert sorted(await subscription_flows.expire(NOW)) == sorted([closing, keeping])
    assert await count(app, Subscription, status="expired") == 2
    assert await count(app, Trade, subscription_id=closing, side="SELL") == 1
    assert await count(app, Trade, subscription_id=keeping, side="SELL") == 0
    assert await subscription_flows.expire(NOW) == []


async def test_snapshot_writes_one_point_per_hour(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    performance_flows: PerformanceFlows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    sub = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    await flow.execute(await decision(app, sub, "BUY"), [sub])
    assert await performance_flows.snapshot(NOW) == 1
    assert await performance_flows.snapshot(NOW + timedelta(minutes=5)) == 0
    assert await performance_flows.snapshot(NOW + timedelta(hours=1)) == 1
    async with app.state.runtime.sessionmaker() as session:
        points = (await session.scalars(select(PerformanceLog))).all()
    position_cost = None
    for point in points:
        assert point.equity == Decimal(1000) + point.realized_pnl + point.unrealized_pnl
        position_cost = point.unrealized_pnl
    assert position_cost is not None


def test_drawdown_and_sharpe_from_equity_points() -> None:
    equity = [Decimal(1000), Decimal(1100), Decimal(990), Decimal(1045)]
    assert max_drawdown_pct(equity) == Decimal("10.0000")  # 1100 -> 990
    assert sharpe(equity[:2]) is None
    # Hourly returns 1/10, -1/10 and 1/18: mean 1/54, sample deviation 0.105018, so
    # 0.176335 per hour and that times sqrt(24 * 365) a year; empyrical agrees.
    yearly = empyrical.sharpe_ratio(np.array([0.1, -0.1, 1 / 18]), annualization=24 * 365)
    assert sharpe(equity) == Decimal(f"{yearly:.4f}") == Decimal("16.5042")


async def test_a_risk_pause_never_overwrites_a_cancel_committed_meanwhile(
    app: FastAPI,
    client: httpx.AsyncClient,
    subscription_flows: SubscriptionFlows,
    developer_key: str,
    marketplace_key: str,
    settings,
) -> None:
    if not settings.database_url.startswith("mysql"):
        pytest.skip("row locks are MariaDB's; SQLite serialises its writers")
    sub_id = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    sessionmaker = app.state.runtime.sessionmaker
    async with sessionmaker() as renter:
        row = await renter.get(Subscription, sub_id, with_for_update=True)
        assert row is not None
        row.status, row.status_reason = "cancelled", "the renter cancelled"
        await renter.flush()
        pausing = asyncio.create_task(subscription_flows.pause(sub_id, "max_drawdown", "drawdown"))
        # The pause has reached the renter's row and waits for its lock (its locking read, or
        # without one its UPDATE).
        async with sessionmaker() as probe:
            for _ in range(200):
                waiting = await probe.scalar(
                    text(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                        "WHERE id <> CONNECTION_ID() AND (info LIKE 'UPDATE subscriptions%' "
                        "OR info LIKE 'SELECT %subscriptions% FOR UPDATE')"
                    )
                )
                await probe.rollback()
                if waiting:
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the pause never waited for the renter's row"
        await renter.commit()
    await pausing
    async with sessionmaker() as session:
        final = await session.get(Subscription, sub_id)
        assert final is not None and final.status == "cancelled"
        paused = await session.scalar(
            select(func.count()).select_from(Event).where(Event.type == "risk.paused")
        )
    assert paused == 0
