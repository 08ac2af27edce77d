"""The budgets are the deployment's: every API process draws on the same Redis buckets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.core.errors import RateLimited
from app.core.ratelimit import MAX_LEASE, WINDOW_S, RedisRateLimiter
from tests.conftest import REDIS_URL, require_service

NOW = 1_800_000_000.0


def frozen() -> float:
    """A clock that stands still, so that no bucket refills while a test counts."""
    return NOW


@pytest.fixture
async def two_processes() -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter, Redis]]:
    require_service("Redis", "127.0.0.1", 6379)
    clients = [Redis.from_url(REDIS_URL) for _ in range(3)]
    try:
        yield (
            RedisRateLimiter(clients[0], 3, frozen),
            RedisRateLimiter(clients[1], 3, frozen),
            clients[2],
        )
    finally:
        for client in clients:
            await client.aclose()


async def test_two_processes_share_one_budget(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter, Redis],
) -> None:
    first, second, _ = two_processes
    key_id = uuid.uuid4().hex
    await first.hit(key_id, 3)
    await second.hit(key_id, 3)
    await first.hit(key_id, 3)
    with pytest.raises(RateLimited) as refused:
        await second.hit(key_id, 3)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    await first.hit(uuid.uuid4().hex, 3)  # another key has a budget of its own


async def _taken(redis: Redis, key_id: str, limit: int) -> int:
    """The tokens the key's bucket has handed out: its TAT is that many intervals ahead."""
    tat = float(await redis.get(f"botmarket:ratelimit:{{{key_id}}}"))
    return round((tat - NOW) / (WINDOW_S / limit))


async def test_a_buckets_state_expires_once_it_is_full_again(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter, Redis],
) -> None:
    first, _, redis = two_processes
    key_id = uuid.uuid4().hex
    await first.hit(key_id, 3)
    await first.hit(key_id, 3)
    assert await _taken(redis, key_id, 3) == 2
    # Two requests of 3 a minute refill in 40 s; the key outlives that by a window.
    ttl_ms = await redis.pttl(f"botmarket:ratelimit:{{{key_id}}}")
    assert (WINDOW_S + 39) * 1000 < ttl_ms <= (WINDOW_S + 40) * 1000


async def test_a_process_takes_the_budget_in_leases_not_per_request() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    async with Redis.from_url(REDIS_URL) as redis:
        limiter = RedisRateLimiter(redis, 600, frozen)
        limit = 1_000_000
        key_id = uuid.uuid4().hex
        # Leases double while they are spent: 1, 2, 4, ... up to MAX_LEASE.
        sizes = [1, 2, 4, 8, 16, 32, MAX_LEASE]
        for _ in range(sum(sizes)):
            await limiter.hit(key_id, limit)
        assert await _taken(redis, key_id, limit) == sum(sizes)
        await limiter.hit(key_id, limit)
        assert await _taken(redis, key_id, limit) == sum(sizes) + MAX_LEASE  # one more lease
        for _ in range(MAX_LEASE - 1):
            await limiter.hit(key_id, limit)
        assert await _taken(redis, key_id, limit) == sum(sizes) + MAX_LEASE  # from the lease


async def test_processes_together_admit_exactly_the_limit(
    two_processes: tuple[RedisRateLimiter, RedisRateLimiter, Redis],
) -> None:
    _, _, redis = two_processes
    limit = 1_000
    first, second = RedisRateLimiter(redis, 600, frozen), RedisRateLimiter(redis, 600, frozen)
    key_id = uuid.uuid4().hex
    admitted = {"first": 0, "second": 0}
    refused: set[str] = set()
    # Turn by turn until both are refused: a lease one process leaves unused stays its own,
    # so the last part of the budget goes request by request.
    while len(refused) < 2:
        for name, limiter in (("first", first), ("second", second)):
            try:
                await limiter.hit(key_id, limit)
                admitted[name] += 1
            except RateLimited:
                refused.add(name)
    assert admitted["first"] + admitted["second"] == limit
    assert admitted["first"] > 0 and admitted["second"] > 0
    assert await _taken(redis, key_id, limit) == limit
