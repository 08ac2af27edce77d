"""The per-key budget is the deployment's: every API process draws on one Redis counter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.core.errors import RateLimited
from app.core.ratelimit import MAX_LEASE, RedisRateLimiter
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


async def _counter(redis: Redis, key_id: str) -> int:
    [counter] = await redis.keys(f"botmarket:ratelimit:{key_id}:*")
    return int(await redis.get(counter))


async def test_a_process_takes_the_budget_in_leases_not_per_request() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    async with Redis.from_url(REDIS_URL) as redis:
        limiter = RedisRateLimiter(redis, 1_000_000)
        key_id = uuid.uuid4().hex
        await limiter.hit(key_id)
        assert await _counter(redis, key_id) == MAX_LEASE  # one lease, counted in full
        for _ in range(MAX_LEASE - 1):
            await limiter.hit(key_id)
        assert await _counter(redis, key_id) == MAX_LEASE  # admitted from the lease
        await limiter.hit(key_id)
        assert await _counter(redis, key_id) == 2 * MAX_LEASE


async def test_processes_together_admit_exactly_the_limit(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter, Redis],
) -> None:
    _, _, redis = two_processes
    limit = 1_000
    first, second = RedisRateLimiter(redis, limit), RedisRateLimiter(redis, limit)
    key_id = uuid.uuid4().hex
    admitted = {"first": 0, "second": 0}
    refused: set[str] = set()
    # Turn by turn until both are refused: a lease one process leaves unused stays its own,
    # so the last part of the budget goes request by request.
    while len(refused) < 2:
        for name, limiter in (("first", first), ("second", second)):
            try:
                await limiter.hit(key_id)
                admitted[name] += 1
            except RateLimited:
                refused.add(name)
    assert admitted["first"] + admitted["second"] == limit
    assert admitted["first"] > 0 and admitted["second"] > 0
    assert await _counter(redis, key_id) == limit
