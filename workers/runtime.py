"""What one worker process owns: one event loop, one engine, one set of SDK clients.

Built lazily on the first task of the process (after the prefork fork, so nothing is shared
with the parent) and disposed when the process shuts down. Tasks run their coroutine on this
loop; never asyncio.run per task, which would strand pooled connections on dead loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from celery.signals import worker_process_shutdown
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.backtests.flows import BacktestFlows
from app.core.crypto import Keyring
from app.core.db import create_engine, create_sessionmaker
from app.core.locks import NamedLocks
from app.core.memory import settled_garbage_collector
from app.core.redis_clients import open_redis
from app.core.settings import Settings, get_settings
from app.credentials.service import close_stale_clients
from app.events.doorbell import Doorbell
from app.integrations.binance.clients import BinanceClients
from app.integrations.llm.registry import VoterPool
from app.market_streams.prices import price_book
from app.performance.flows import PerformanceFlows
from app.subscriptions.flows import SubscriptionFlows
from app.trading.decide import DecisionMaker
from app.trading.execution import Executor
from app.trading.flows import TradingFlows
from app.trading.market_data import CandleCache, MarketData, MemoryCandleCache, RedisCandleCache
from app.webhooks.flows import WebhookFlows

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class WorkerRuntime:
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis | None
    doorbell: Doorbell
    clients: BinanceClients
    voters: VoterPool
    trading: TradingFlows
    subscriptions: SubscriptionFlows
    performance: PerformanceFlows
    backtests: BacktestFlows
    webhooks: WebhookFlows
    # Holds the collector settled (app.core.memory) until close().
    settled: contextlib.ExitStack

    @classmethod
    def build(cls, settings: Settings) -> WorkerRuntime:
        from workers.celery_app import celery_app

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        engine = create_engine(settings.database_url)
        sessionmaker = create_sessionmaker(engine)
        # The events a task's transaction records ring the API processes' live hubs.
        doorbell = Doorbell(settings)
        doorbell.serve(sessionmaker)
        redis = open_redis(settings)
        clients = BinanceClients.from_settings(settings, redis)
        cache: CandleCache = RedisCandleCache(redis) if redis is not None else MemoryCandleCache()
        locks = NamedLocks(redis)
        voters = VoterPool(settings)
        keyring = Keyring.parse(settings.fernet_keyring_text())

        # kombu's publish blocks: in a thread, never on the loop every task shares.
        def enqueue(name: str, kwargs: dict[str, Any]) -> Coroutine[Any, Any, Any]:
            return asyncio.to_thread(celery_app.send_task, name, kwargs=kwargs)

        executor = Executor(sessionmaker, clients, keyring, settings)
        subscriptions = SubscriptionFlows(sessionmaker, executor)
        trading = TradingFlows(
            sessionmaker,
            DecisionMaker(sessionmaker, MarketData(clients, cache, locks), voters, settings),
            executor,
            subscriptions,
            clients,
            settings,
            enqueue=enqueue,
            prices=price_book(redis, sessionmaker),
            chunk_size=settings.execute_chunk_size,
        )
        performance = PerformanceFlows(sessionmaker, clients, settings)
        backtests = BacktestFlows(sessionmaker, clients, voters, settings, enqueue)
        webhooks = WebhookFlows(sessionmaker, keyring, settings, enqueue)
        # Last: all that exists now lives as long as the process.
        settled = contextlib.ExitStack()
        settled.enter_context(settled_garbage_collector())
        return cls(
            loop,
            engine,
            sessionmaker,
            redis,
            doorbell,
            clients,
            voters,
            trading,
            subscriptions,
            performance,
            backtests,
            webhooks,
            settled,
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(self._after_pruning(coroutine))

    async def _after_pruning(self, coroutine: Coroutine[Any, Any, T]) -> T:
        # Credentials are deleted and replaced by the API process: before each task, the
        # clients (and plaintext keys) of the ones gone or changed are closed, as are idle ones.
        try:
            async with self.sessionmaker() as session:
                await close_stale_clients(session, self.clients)
        except BaseException:
            coroutine.close()  # never started: closed, so no "never awaited" warning hides this
            raise
        return await coroutine

    def close(self) -> None:
        async def dispose() -> None:
            await self.clients.close()
            await self.voters.aclose()
            await self.webhooks.aclose()
            if self.redis is not None:
                await self.redis.aclose()
            await self.engine.dispose()

        self.loop.run_until_complete(dispose())
        self.doorbell.close()
        self.loop.close()
        self.settled.close()


_runtime: WorkerRuntime | None = None


def runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        _runtime = WorkerRuntime.build(get_settings())
    return _runtime


@worker_process_shutdown.connect
def _dispose(**_: object) -> None:
    global _runtime
    if _runtime is not None:
        _runtime.close()
        _runtime = None
