"""`botmarket stream`: the process that owns the market streams while it holds their lease.

Without the lease it is a standby: it tries again every third of `STREAM_LEASE_S` and takes
over once the holder's lease has expired (the holder died or froze), so a second process
takes over within the lease and a third of it. Holding it, it streams and renews; a lease it
cannot renew (taken over, or the database unreachable for a whole lease) stops its streams
and makes it a standby again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid

from app.core.db import create_engine, create_sessionmaker
from app.core.jobs import JobQueue
from app.core.logging import configure_logging
from app.core.redis_clients import broker_tls, open_redis
from app.core.settings import Settings
from app.events.doorbell import Doorbell
from app.market_streams.flows import MarketStreamFlows
from app.market_streams.lease import Lease
from app.market_streams.prices import price_book

log = logging.getLogger(__name__)


def holder_name() -> str:
    # The pid alone repeats across containers (each is pid 1 in its own).
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def stream(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    redis = open_redis(settings)
    jobs = JobQueue(settings.broker_url, broker_tls(settings))
    lease = Lease(sessionmaker, holder_name(), settings.stream_lease_s)
    # Rung by every process's commit that recorded events: the exit index follows the
    # positions' events as they commit (without Redis, it reads the outbox on a timer).
    doorbell = Doorbell(settings)
    listening = asyncio.create_task(doorbell.listen(redis))
    rung = doorbell.rung if redis is not None else None
    try:
        while True:
            await _standby(lease, settings)
            flows = MarketStreamFlows(
                sessionmaker, settings, jobs.send, price_book(redis, sessionmaker), lease, rung
            )
            await _while_held(lease, flows, settings)
    finally:
        doorbell.stop()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        doorbell.close()
        await jobs.drain()
        jobs.close()
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


async def _standby(lease: Lease, settings: Settings) -> None:
    log.info("market streams: waiting for the lease", extra={"holder": lease.holder})
    while True:
        try:
            if await lease.acquire():
                return
        except Exception:
            log.warning("could not ask for the market streams' lease", exc_info=True)
        await asyncio.sleep(settings.stream_lease_s / 3)


async def _while_held(lease: Lease, flows: MarketStreamFlows, settings: Settings) -> None:
    streaming = asyncio.create_task(flows.run())
    renewed_at = time.monotonic()
    try:
        while not streaming.done():
            await asyncio.sleep(settings.stream_lease_s / 3)
            try:
                if not await lease.renew():
                    return  # taken over
                renewed_at = time.monotonic()
            except Exception:
                log.warning("could not renew the market streams' lease", exc_info=True)
                if time.monotonic() - renewed_at >= settings.stream_lease_s:
                    return  # expired by now: another process may hold it
    finally:
        streaming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await streaming


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
