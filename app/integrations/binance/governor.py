"""One rate-limit governor for every Binance call of the deployment.

Binance limits request weight per IP (6000 per minute), shared by all renters; a 429 turns
into a 418 ban when ignored. So every call first takes its weight from one token bucket
(Redis, shared by all processes; in process when Redis is absent); every response's
X-MBX-USED-WEIGHT-1M corrects the bucket when Binance counted more than we did; a 429 or 418
stops every call until its Retry-After has passed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from redis.asyncio import Redis


class Governor(Protocol):
    async def acquire(self, weight: int) -> None:
        """Wait until `weight` may be spent, then spend it."""

    async def observe_used_weight(self, used: int) -> None:
        """Binance says `used` weight is spent in its current minute."""

    async def block_for(self, seconds: float) -> None:
        """Stop every call for `seconds` (after a 429 or 418)."""


class InProcessGovernor:
    def __init__(self, weight_per_minute: int) -> None:
        self.capacity = float(weight_per_minute)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.capacity / 60)
        self._updated = now

    async def acquire(self, weight: int) -> None:
        async with self._lock:  # one waiter at a time keeps the order fair
            while True:
                now = time.monotonic()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                self._refill(now)
                if self._tokens >= weight:
                    self._tokens -= weight
                    return
                await asyncio.sleep((weight - self._tokens) * 60 / self.capacity)

    async def observe_used_weight(self, used: int) -> None:
        self._refill(time.monotonic())
        self._tokens = min(self._tokens, self.capacity - used)

    async def block_for(self, seconds: float) -> None:
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)


# KEYS[1] bucket hash, KEYS[2] blocked-until key. ARGV: now_ms, capacity, weight, mode.
# mode "take": returns 0 when granted, else the milliseconds to wait.
# mode "used": caps the tokens at capacity - weight (weight = Binance's used weight).
_BUCKET_SCRIPT = """
local now = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local weight = tonumber(ARGV[3])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1] or capacity)
local ts = tonumber(state[2] or now)
tokens = math.min(capacity, tokens + (now - ts) * capacity / 60000)
local wait = 0
if ARGV[4] == 'used' then
  tokens = math.min(tokens, capacity - weight)
elseif now < blocked then
  wait = blocked - now
elseif tokens >= weight then
  tokens = tokens - weight
else
  wait = math.ceil((weight - tokens) * 60000 / capacity)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 120000)
return wait
"""


class RedisGovernor:
    def __init__(
        self, redis: Redis, weight_per_minute: int, prefix: str = "botmarket:binance"
    ) -> None:
        self.capacity = weight_per_minute
        self._redis = redis
        self._bucket = f"{prefix}:weight"
        self._blocked = f"{prefix}:blocked_until"
        self._script = redis.register_script(_BUCKET_SCRIPT)

    async def _run(self, weight: int, mode: str) -> int:
        now_ms = int(time.time() * 1000)
        keys = [self._bucket, self._blocked]
        return int(await self._script(keys=keys, args=[now_ms, self.capacity, weight, mode]))

    async def acquire(self, weight: int) -> None:
        # Polling is the point: the wait is computed by Redis for every process at once.
        while (wait_ms := await self._run(weight, "take")) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait_ms / 1000)

    async def observe_used_weight(self, used: int) -> None:
        await self._run(used, "used")

    async def state(self) -> tuple[float | None, float | None]:
        """What the console's health page shows: the weight left in the bucket when it was
        last used (None: unused for two minutes, so full), and the ban's end as a Unix time
        (None: no ban)."""
        tokens = await self._redis.hget(self._bucket, "tokens")
        blocked = int(await self._redis.get(self._blocked) or 0)
        return (
            float(tokens) if tokens is not None else None,
            blocked / 1000 if blocked > time.time() * 1000 else None,
        )

    async def block_for(self, seconds: float) -> None:
        until = int((time.time() + seconds) * 1000)
        # Keep the later of two bans; the key expires by itself once the ban is over.
        current = int(await self._redis.get(self._blocked) or 0)
        if until > current:
            await self._redis.set(self._blocked, until, px=int(seconds * 1000) + 1000)


def shared_governor(redis: Redis | None, weight_per_minute: int) -> Governor:
    """The deployment's one governor: in Redis when there is one, else in this process."""
    if redis is not None:
        return RedisGovernor(redis, weight_per_minute)
    return InProcessGovernor(weight_per_minute)
