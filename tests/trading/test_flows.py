"""The scheduled flows as services: dispatch, decide, execute with risk, protect, expire,
snapshot. Celery only wraps these (tests/workers run them through a real worker)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.models import Decision, PerformanceLog, Position, Subscription, Trade
from app.performance.service import max_drawdown_pct, sharpe
from app.trading.execution import AttemptInFlight
from app.trading.flows import TradingFlows
from tests.fakes import RunningFakes
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import NOW, Queue, count, decision, make_bot, subscribe, trade_of


async def run_jobs(flows: TradingFlows, queue: Queue) -> None:
    """What the workers would do with the queue, in order."""
    while queue.jobs:
        name, kwargs = queue.jobs.pop(0)
        if name == "trading.decide":
            await flows.decide(
                kwargs["bot_version_id"],
                kwargs["symbol"],
                kwargs["timeframe"],
                datetime.fromisoformat(kwargs["as_of"]),
            )
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
    decides = queue.named("trading.decide")
    assert {j["as_of"] for j in decides} == {"2026-11-20T12:00:00+00:00"}
    btc = next(j for j in decides if j["symbol"] == "BTCUSDT")
    queue.jobs.clear()
    await flow.decide(**{**btc, "as_of": datetime.fromisoformat(btc["as_of"])})
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
    assert len(queue.named("trading.decide")) == 2  # both saw the candle undecided
    decides = [j for j in queue.jobs if j[0] == "trading.decide"]
    queue.jobs.clear()
    await asyncio.gather(
        *(
            flow.decide(
                k["bot_version_id"], k["symbol"], k["timeframe"], datetime.fromisoformat(k["as_of"])
            )
            for _, k in decides
        )
    )
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
    assert sorted(await flow.expire(NOW)) == sorted([closing, keeping])
    assert await count(app, Subscription, status="expired") == 2
    assert await count(app, Trade, subscription_id=closing, side="SELL") == 1
    assert await count(app, Trade, subscription_id=keeping, side="SELL") == 0
    assert await flow.expire(NOW) == []


async def test_snapshot_writes_one_point_per_hour(
    app: FastAPI,
    client: httpx.AsyncClient,
    flows,
    developer_key: str,
    marketplace_key: str,
) -> None:
    flow, _ = flows
    sub = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    await flow.execute(await decision(app, sub, "BUY"), [sub])
    assert await flow.snapshot(NOW) == 1
    assert await flow.snapshot(NOW + timedelta(minutes=5)) == 0
    assert await flow.snapshot(NOW + timedelta(hours=1)) == 1
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
    returns = [Decimal("0.1"), Decimal(-110) / 1100, Decimal(55) / 990]
    mean = sum(returns) / 3
    std = (sum((r - mean) ** 2 for r in returns) / 2).sqrt()
    assert sharpe(equity) == (mean / std * Decimal(24 * 365).sqrt()).quantize(Decimal("0.0001"))
