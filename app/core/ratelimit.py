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


# The minute's counter, and its expiry on the minute's first hit: one command, so one round
# trip per request, and atomic (a pipeline of INCR + EXPIRE in MULTI/EXEC is four commands).
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


class RedisRateLimiter:
    """Every API process counts in the same Redis key, so the budget is the deployment's.

    Counted in Redis on each request rather than in a local bucket synced in the background:
    one round trip (~0.1 ms here) buys an exact shared count, where a synced bucket would let
    each process overrun the budget by what it admits between two syncs.
    """

    def __init__(self, redis: Redis, limit_per_minute: int) -> None:
        self._limit = limit_per_minute
        # EVALSHA, and EVAL only when the server does not know the script yet.
        self._hit = redis.register_script(_HIT)

    async def hit(self, key_id: str) -> None:
        minute, retry_after = _window(time.time())
        count = await self._hit(keys=[f"botmarket:ratelimit:{key_id}:{minute}"], args=[120])
        if int(count) > self._limit:
            raise _refuse(self._limit, retry_after)
