"""The governor: weight comes from one bucket, and a 429/418 stops every call until
Retry-After."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.integrations.binance.governor import Governor, InProcessGovernor, RedisGovernor
from tests.conftest import REDIS_URL, require_service


@pytest.fixture(params=["in-process", "redis"])
async def make_governor(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    clients: list[Redis] = []

    def make(weight_per_minute: int) -> Governor:
        if request.param == "in-process":
            return InProcessGovernor(weight_per_minute)
        require_service("Redis", "127.0.0.1", 6379)
        redis = Redis.from_url(REDIS_URL)
        clients.append(redis)
        return RedisGovernor(redis, weight_per_minute, prefix=f"test:{uuid.uuid4().hex}")

    yield make
    for redis in clients:
        await redis.aclose()


async def timed(coroutine: object) -> float:
    started = time.monotonic()
    await coroutine  # type: ignore[misc]
    return time.monotonic() - started


async def test_a_block_holds_every_call_until_retry_after(make_governor) -> None:
    governor = make_governor(6000)
    await governor.acquire(1)
    await governor.block_for(1.0)
    waits = await asyncio.gather(*(timed(governor.acquire(1)) for _ in range(3)))
    assert min(waits) >= 0.9


async def test_weight_beyond_the_budget_waits_for_refill(make_governor) -> None:
    governor = make_governor(600)  # 10 weight per second
    assert await timed(governor.acquire(600)) < 0.5
    assert await timed(governor.acquire(5)) >= 0.4


async def test_binance_used_weight_corrects_the_bucket(make_governor) -> None:
    governor = make_governor(600)
    # Another machine on our IP spent nearly everything: we must slow down too.
    await governor.observe_used_weight(598)
    assert await timed(governor.acquire(7)) >= 0.4


async def test_two_processes_share_one_redis_bucket() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"test:{uuid.uuid4().hex}"
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        a, b = RedisGovernor(first, 600, prefix=prefix), RedisGovernor(second, 600, prefix=prefix)
        await a.acquire(600)
        assert await timed(b.acquire(5)) >= 0.4
        await a.block_for(1.0)
        assert await timed(b.acquire(1)) >= 0.9
    finally:
        await first.aclose()
        await second.aclose()
