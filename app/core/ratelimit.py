"""Per-API-key request budget per wall-clock minute: Redis when configured, else in process.

Several API processes share one budget only through Redis; the in-process counter is for the
embedded single-process default.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from redis.asyncio import Redis

from app.core.errors import RateLimited


class RateLimiter(Protocol):
    async def hit(self, key_id: str) -> None:
        """Count one request; raise RateLimited with Retry-After when over budget."""


def _window(now: float) -> tuple[int, int]:
    minute = int(now // 60)
    retry_after = max(1, math.ceil((minute + 1) * 60 - now))
    return minute, retry_after


def _refuse(limit: int, retry_after: int) -> RateLimited:
    return RateLimited(
        f"more than {limit} requests in this minute for this API key",
        headers={"Retry-After": str(retry_after)},
    )


class InProcessRateLimiter:
    def __init__(self, limit_per_minute: int) -> None:
        self._limit = limit_per_minute
        self._counts: dict[str, tuple[int, int]] = {}

    async def hit(self, key_id: str) -> None:
        minute, retry_after = _window(time.time())
        seen_minute, count = self._counts.get(key_id, (minute, 0))
        count = count + 1 if seen_minute == minute else 1
        self._counts[key_id] = (minute, count)
        if count > self._limit:
            raise _refuse(self._limit, retry_after)


# Takes part of the minute's budget for one process: `granted = min(want, limit - used)`, where
# `want` shrinks with what is left (1/LEASE_DIVISOR of it, at most MAX_LEASE), down to a single
# request near the limit. Atomic, so the grants of all processes never add up past the limit.
_LEASE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
local left = limit - used
local want = math.max(1, math.min(tonumber(ARGV[2]), math.floor(left / tonumber(ARGV[3]))))
local granted = math.min(want, left)
if granted <= 0 then
  return 0
end
if redis.call('INCRBY', KEYS[1], granted) == granted then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return granted
"""
MAX_LEASE = 64
LEASE_DIVISOR = 16
# The counter outlives its minute, so that a late lease of the minute still finds it.
_COUNTER_TTL_S = 120


class RedisRateLimiter:
    """Every API process draws on the same Redis counter, so the budget is the deployment's.

    A process takes the budget in leases of up to MAX_LEASE requests and admits from its lease
    locally: one Redis round trip per lease, not per request (redis-py's call per request is a
    visible share of a read's CPU). Chosen over a local count synced in the
    background, which lets each process overrun the budget by what it admits between syncs:
    a lease is counted in Redis before any of its requests is admitted, so together the
    processes never admit more than the limit. What a lease leaves unused when its minute ends
    is not admitted by anyone; leases shrink with what is left of the budget (a sixteenth of
    it, a single request near the limit), so a process holds back little of the last part.
    """

    def __init__(self, redis: Redis, limit_per_minute: int) -> None:
        self._limit = limit_per_minute
        # EVALSHA, and EVAL only when the server does not know the script yet.
        self._lease = redis.register_script(_LEASE)
        # key id -> (minute, requests left of this process's leases for that minute)
        self._left: dict[str, tuple[int, int]] = {}

    def _take(self, key_id: str, minute: int) -> bool:
        held_minute, left = self._left.get(key_id, (minute, 0))
        if held_minute != minute or left == 0:
            return False
        self._left[key_id] = (minute, left - 1)
        return True

    async def hit(self, key_id: str) -> None:
        minute, retry_after = _window(time.time())
        if self._take(key_id, minute):
            return
        granted = int(
            await self._lease(
                keys=[f"botmarket:ratelimit:{key_id}:{minute}"],
                args=[self._limit, MAX_LEASE, LEASE_DIVISOR, _COUNTER_TTL_S],
            )
        )
        # Requests that ran out at the same moment lease too: their grants add up, none is
        # dropped (the counter already holds them), and each request takes one.
        held_minute, left = self._left.get(key_id, (minute, 0))
        self._left[key_id] = (minute, granted + (left if held_minute == minute else 0))
        if not self._take(key_id, minute):
            raise _refuse(self._limit, retry_after)
