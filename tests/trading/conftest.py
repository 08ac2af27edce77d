"""Fixtures of the trading tests: the trading, subscription and performance flows wired to
the sandbox, the fake LLMs and a queue that records the jobs they send, plus helpers that
make bots, renters and decisions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.locks import NamedLocks
from app.core.redis_clients import open_redis
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.governor import InProcessGovernor
from app.integrations.llm.registry import VoterPool
from app.market_streams.prices import REDIS_KEY, PriceBook, price_book
from app.models import Decision, Subscription, Trade
from app.performance.flows import PerformanceFlows
from app.subscriptions.flows import SubscriptionFlows
from app.trading.decide import DecisionMaker
from app.trading.execution import Executor
from app.trading.flows import TradingFlows
from app.trading.market_data import MarketData, MemoryCandleCache
from tests.api.test_contract import listed_bot
from tests.fakes import RunningFakes
from tests.helpers import Clock, headers, new_principal
from tests.sandbox_server import SandboxServer

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
ALWAYS_BUY = {
    "voters": [{"provider": "openai", "model": "gpt-4o-mini"}],
    "ensemble": {"indicator_weight": "0", "quorum": 1},
}


@dataclass
class Queue:
    jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    broken: bool = False  # a broker that refuses every job

    async def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        if self.broken:
            raise ConnectionError("the broker is unreachable")
        self.jobs.append((name, kwargs))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for job, kwargs in self.jobs if job == name]


@pytest.fixture
def clock() -> Clock:
    # The candles of these tests are in the past; their orders are sent "then".
    return Clock(NOW)


@asynccontextmanager
async def fresh_clients(sandbox: SandboxServer) -> AsyncIterator[BinanceClients]:
    """Exchange clients with nothing cached, as a process of their own has them."""
    clients = BinanceClients(
        InProcessGovernor(6000), api_url=sandbox.url, rules_ttl_s=300, idle_s=300
    )
    try:
        yield clients
    finally:
        await clients.close()


@pytest.fixture
async def sandbox_clients(sandbox: SandboxServer) -> AsyncIterator[BinanceClients]:
    async with fresh_clients(sandbox) as clients:
        yield clients


@pytest.fixture
def trading_executor(
    app: FastAPI, settings: Settings, sandbox_clients: BinanceClients, clock: Clock
) -> Executor:
    runtime = app.state.runtime
    return Executor(runtime.sessionmaker, sandbox_clients, runtime.keyring, settings, clock)


@pytest.fixture
def subscription_flows(app: FastAPI, trading_executor: Executor) -> SubscriptionFlows:
    return SubscriptionFlows(app.state.runtime.sessionmaker, trading_executor)


@pytest.fixture
def performance_flows(
    app: FastAPI, settings: Settings, sandbox_clients: BinanceClients
) -> PerformanceFlows:
    return PerformanceFlows(app.state.runtime.sessionmaker, sandbox_clients, settings)


@pytest.fixture
async def prices(app: FastAPI, settings: Settings) -> AsyncIterator[PriceBook]:
    """The streamed prices' book: Redis beside MariaDB, the database beside SQLite."""
    redis = open_redis(settings)
    yield price_book(redis, app.state.runtime.sessionmaker)
    if redis is not None:
        await redis.delete(REDIS_KEY)
        await redis.aclose()


@pytest.fixture
async def flows(
    app: FastAPI,
    settings: Settings,
    sandbox_clients: BinanceClients,
    trading_executor: Executor,
    subscription_flows: SubscriptionFlows,
    llm_fakes: RunningFakes,
    prices: PriceBook,
) -> AsyncIterator[tuple[TradingFlows, Queue]]:
    runtime = app.state.runtime
    llm = settings.model_copy(
        update={
            "openai_api_key": Settings(openai_api_key="fake-openai-key").openai_api_key,
            "openai_base_url": f"{llm_fakes.url}/v1",
            "llm_timeout_s": 1.5,
            # A decision another process holds is waited for a second, not 30: the tests
            # that hold one get their DecisionInFlight soon.
            "decision_wait_s": 1.0,
        }
    )
    voters, locks = VoterPool(llm), NamedLocks(None)
    decisions = DecisionMaker(
        runtime.sessionmaker, MarketData(sandbox_clients, MemoryCandleCache(), locks), voters, llm
    )
    queue = Queue()
    yield (
        TradingFlows(
            runtime.sessionmaker,
            decisions,
            trading_executor,
            subscription_flows,
            sandbox_clients,
            settings,
            queue,
            prices,
            chunk_size=2,
            decide_batch=2,
            paper_batch=2,
        ),
        queue,
    )
    await voters.aclose()


async def make_bot(client: httpx.AsyncClient, key: str, **strategy: Any) -> dict:
    return await listed_bot(client, key, name="flow", strategy={**ALWAYS_BUY, **strategy})


async def subscribe(
    client: httpx.AsyncClient, key: str, bot: dict, symbol: str = "BTCUSDT", **body: Any
) -> str:
    response = await client.post(
        "/api/v1/subscriptions",
        json={
            "bot_id": bot["id"],
            "symbol": symbol,
            "timeframe": "1h",
            "mode": "paper",
            "quote_amount": "100",
            **body,
        },
        headers=headers(key, new_principal()),
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def count(app: FastAPI, model: type, **where: Any) -> int:
    async with app.state.runtime.sessionmaker() as session:
        return int(
            await session.scalar(select(func.count()).select_from(model).filter_by(**where)) or 0
        )


async def decision(
    app: FastAPI, sub_id: str, action: str, minutes: int = 0, candle: datetime = NOW
) -> str:
    async with app.state.runtime.sessionmaker() as session:
        sub = await session.get(Subscription, sub_id)
        row = Decision(
            bot_version_id=sub.bot_version_id,
            symbol=sub.symbol,
            timeframe=sub.timeframe,
            candle_open_at=candle + timedelta(minutes=minutes),
            indicators={},
            indicator_score=Decimal(0),
            combined_score=Decimal(1),
            action=action,
            rule_version="test",
            rule_params={},
        )
        session.add(row)
        await session.commit()
        return row.id


async def trade_of(app: FastAPI, decision_id: str) -> Trade:
    async with app.state.runtime.sessionmaker() as session:
        return (await session.scalars(select(Trade).where(Trade.decision_id == decision_id))).one()
