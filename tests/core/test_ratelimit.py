"""The per-key budget is the deployment's: every API process counts in one Redis key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.core.errors import RateLimited
from app.core.ratelimit import RedisRateLimiter
from tests.conftest import REDIS_URL, require_service


@pytest.fixture
async def two_processes() -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter, Redis]]:
    require_service("Redis", "127.0.0.1", 6379)
    clients = [Redis.from_url(REDIS_URL) for _ in range(3)]
    try:
        yield RedisRateLimiter(clients[0], 3), RedisRateLimiter(clients[1], 3), clients[2]
    finally:
        for client in clients:
            await client.aclose()


async def test_two_processes_share_one_budget(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter, Redis],
) -> None:
    first, second, _ = two_processes
    key_id = uuid.uuid4().hex
    await first.hit(key_id)
    await second.hit(key_id)
    await first.hit(key_id)
    with pytest.raises(RateLimited) as refused:
        await second.hit(key_id)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    await first.hit(uuid.uuid4().hex)  # another key has a budget of its own


async def test_the_minute_counter_expires(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter, Redis],
) -> None:
    first, _, redis = two_processes
    key_id = uuid.uuid4().hex
    await first.hit(key_id)
    await first.hit(key_id)
    [counter] = await redis.keys(f"botmarket:ratelimit:{key_id}:*")
    assert await redis.get(counter) == b"2"
    assert 0 < await redis.ttl(counter) <= 120
