"""One stream process acts at a time: a lease in the database with a fencing token. A
standby takes over an expired lease under the next token; the old holder's renewal and its
check before sending a job fail from then on. Real `botmarket stream` processes: the
standby takes over when the holder is SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.market_streams.flows import MarketStreamFlows
from app.market_streams.lease import STREAM_LEASE, Lease
from app.market_streams.prices import PriceBook
from app.models import ProcessLease
from tests.market_streams.conftest import stream_url, until
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import Queue, make_bot, subscribe

ROOT = Path(__file__).resolve().parents[2]


async def test_a_standby_takes_over_an_expired_lease_and_fences_the_old_holder(
    app: FastAPI,
    client,
    developer_key: str,
    marketplace_key: str,
    stream_settings: Settings,
    prices: PriceBook,
) -> None:
    sessions = app.state.runtime.sessionmaker
    first, second = Lease(sessions, "first", ttl_s=0.5), Lease(sessions, "second", ttl_s=0.5)
    assert await first.acquire()
    assert not await second.acquire()  # held, unexpired
    assert await first.renew() and await first.holds()
    await asyncio.sleep(0.6)  # the first froze past its lease
    assert not await first.holds()
    assert await second.acquire()
    assert second.token == 2
    assert not await first.renew()
    assert not await first.acquire()  # the second's lease is live
    # A frozen holder's flows send nothing once it wakes: the fence is checked before a job.
    await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    queue = Queue()
    frozen = MarketStreamFlows(sessions, stream_settings, queue, prices, first)
    await frozen.kline_closed("BTCUSDT", "1h", datetime.now(UTC))
    assert queue.jobs == []
    holding = MarketStreamFlows(sessions, stream_settings, queue, prices, second)
    await holding.kline_closed("BTCUSDT", "1h", datetime.now(UTC))
    assert [name for name, _ in queue.jobs] == ["trading.decide"]


@contextlib.contextmanager
def stream_process(settings: Settings, sandbox: SandboxServer, log: Path) -> Iterator[int]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.broker_url,
        "BINANCE_STREAM_URL": stream_url(sandbox),
        "FERNET_KEYS": settings.fernet_keys.get_secret_value(),
    }
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "stream"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        yield process.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


async def holder_pid(app: FastAPI) -> int | None:
    async with app.state.runtime.sessionmaker() as session:
        lease = await session.get(ProcessLease, STREAM_LEASE)
    return int(lease.holder.split(":")[1]) if lease is not None else None


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_second_stream_process_takes_over_when_the_first_is_killed(
    app: FastAPI, settings: Settings, sandbox: SandboxServer, tmp_path: Path
) -> None:
    with stream_process(settings, sandbox, tmp_path / "first.log") as first:

        async def first_holds() -> bool:
            return await holder_pid(app) == first

        await until(first_holds, within_s=60)
        with stream_process(settings, sandbox, tmp_path / "second.log") as second:
            await asyncio.sleep(3)  # a live holder keeps its lease from the standby
            assert await holder_pid(app) == first
            os.kill(first, signal.SIGKILL)

            async def second_holds() -> bool:
                return await holder_pid(app) == second

            # The lease (6 s) and a third of it: within 10 s of the kill; the bound leaves
            # room for a loaded machine.
            await until(second_holds, within_s=30)
