"""`botmarket stream`: the process that owns the market streams, until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from app.core.db import create_engine, create_sessionmaker
from app.core.jobs import JobQueue
from app.core.logging import configure_logging
from app.core.redis_clients import broker_tls, open_redis
from app.core.settings import Settings
from app.market_streams.flows import MarketStreamFlows
from app.market_streams.prices import price_book

log = logging.getLogger(__name__)


async def stream(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    redis = open_redis(settings)
    jobs = JobQueue(settings.broker_url, broker_tls(settings))
    flows = MarketStreamFlows(sessionmaker, settings, jobs.send, price_book(redis, sessionmaker))
    try:
        await flows.run()
    finally:
        await jobs.drain()
        jobs.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def run_stream(settings: Settings) -> None:
    configure_logging(settings.log_level)

    async def until_stopped() -> None:
        work = asyncio.create_task(stream(settings))
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, work.cancel)
        log.info("market streams starting", extra={"url": settings.binance_stream_url})
        with contextlib.suppress(asyncio.CancelledError):
            await work

    asyncio.run(until_stopped())
