"""Request budgets, per API key and per renter, as GCRA buckets: Redis when configured, else in
process.

Every key has a bucket of `key_limit` requests a minute; a marketplace key's request made for
a renter (`X-Principal-ID`) also draws on that renter's bucket of `renter_limit` a minute, so one
noisy renter cannot starve the others and the key's bucket caps them all. A bucket holds at
most a minute's requests and refills continuously (GCRA, the generic cell rate algorithm): a
client that spent its minute at once waits for each request as it refills, so no window
boundary lets a second minute's worth through.

Several API processes share the buckets only through Redis; the in-process buckets are for the
embedded single-process default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from app.core.errors import RateLimited

WINDOW_S = 60.0
# A bucket's state is its theoretical arrival time (TAT): the time at which it would be full
# again. Its tokens at `now` are what `WINDOW_S` of tolerance leaves beyond the TAT; a
# thousandth of a token of slack keeps float rounding of the TAT from losing a whole one.
_ROUNDING_SLACK = 1e-3

Clock = Callable[[], float]


class RateLimiter(Protocol):
    async def hit(self, key_id: str, key_limit: int, renter: str | None = None) -> None:
        """Count one request of the key (for `renter`, when given); raise RateLimited with
        `Retry-After` and the RateLimit headers when a bucket it draws on is empty."""


@dataclass(frozen=True)
class _Bucket:
    """Which bucket refused, for the message and the RateLimit headers."""

    policy: str  # "renter" or "key": the names the RateLimit headers give the two
    limit: int


def _interval(limit: int) -> float:
    return WINDOW_S / limit


def _tokens(tat: float, now: float, limit: int) -> int:
    return math.floor((now + WINDOW_S - max(tat, now)) / _interval(limit) + _ROUNDING_SLACK)


def _wait(tat: float, now: float, limit: int) -> float:
    """Seconds until the bucket holds a token again."""
    return max(0.0, max(tat, now) + _interval(limit) - WINDOW_S - now)


def _refuse(
    refused: _Bucket, wait_s: float, key_limit: int, renter_limit: int | None
) -> RateLimited:
    """RFC 9110's Retry-After and the RateLimit-Policy / RateLimit fields of the IETF httpapi
    draft, naming the policies the request drew on and the one that refused it."""
    retry_after = max(1, math.ceil(wait_s))
    policies = [f'"key";q={key_limit};w={WINDOW_S:.0f}']
    if renter_limit is not None:
        policies.insert(0, f'"renter";q={renter_limit};w={WINDOW_S:.0f}')
    whose = "this renter" if refused.policy == "renter" else "this API key"
    return RateLimited(
        f"more than {refused.limit} requests a minute for {whose}",
        headers={
            "Retry-After": str(retry_after),
            "RateLimit-Policy": ", ".join(policies),
            "RateLimit": f'"{refused.policy}";r=0;t={retry_after}',
        },
    )


class _Sweeper:
    """Drops the state of buckets gone idle, once a window: a renter seen once must not stay
    in memory for the life of the process."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next = clock() + WINDOW_S

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + WINDOW_S
        return True


class InProcessRateLimiter:
    def __init__(self, renter_limit: int, clock: Clock = time.time) -> None:
        self._renter_limit = renter_limit
        self._clock = clock
        self._sweeper = _Sweeper(clock)
        # bucket -> TAT; a bucket that is full again (TAT in the past) holds nothing to keep.
        self._tats: dict[tuple[str, str | None], float] = {}

    async def hit(self, key_id: str, key_limit: int, renter: str | None = None) -> None:
        now = self._clock()
        if self._sweeper.due(now):
            self._tats = {b: tat for b, tat in self._tats.items() if tat > now}
        drawn: list[tuple[tuple[str, str | None], _Bucket]] = [
            ((key_id, None), _Bucket("key", key_limit))
        ]
        if renter is not None:
            drawn.insert(0, ((key_id, renter), _Bucket("renter", self._renter_limit)))
        for bucket, of in drawn:
            tat = self._tats.get(bucket, now)
            if _tokens(tat, now, of.limit) < 1:
                renter_limit = self._renter_limit if renter is not None else None
                raise _refuse(of, _wait(tat, now, of.limit), key_limit, renter_limit)
        for bucket, of in drawn:
            self._tats[bucket] = max(self._tats.get(bucket, now), now) + _interval(of.limit)


# Takes a lease of tokens from the request's buckets together: `granted = min(want, what each
# holds)`, where `want` shrinks with what is left (1/DIVISOR of it), down to a single token
# near the limit. Atomic, so the leases of all processes never add up past a bucket. A bucket's
# key expires a window after the bucket is full again: the TAT is by the processes' clocks and
# the expiry by Redis's, and a process whose clock runs behind must still find the state.
# KEYS: the buckets. ARGV: window (s), now (s), want, divisor, then each bucket's limit.
# Returns {granted, 0, 0}, or {0, wait in ms, index of the first empty bucket}.
_LEASE = """
local window, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local tats, intervals, least = {}, {}, math.huge
for i, key in ipairs(KEYS) do
  local interval = window / tonumber(ARGV[4 + i])
  local tat = math.max(tonumber(redis.call('GET', key) or '0'), now)
  local tokens = math.floor((now + window - tat) / interval + 1e-3)
  if tokens < 1 then
    return {0, math.ceil((tat + interval - window - now) * 1000), i}
  end
  tats[i], intervals[i], least = tat, interval, math.min(least, tokens)
end
local want = math.max(1, math.min(tonumber(ARGV[3]), math.floor(least / tonumber(ARGV[4]))))
local granted = math.min(want, least)
for i, key in ipairs(KEYS) do
  local tat = tats[i] + granted * intervals[i]
  redis.call('SET', key, string.format('%.17g', tat), 'PX', math.ceil((tat - now + window) * 1000))
end
return {granted, 0, 0}
"""
MAX_LEASE = 64
LEASE_DIVISOR = 16
# A lease is spent within this long or lapses. Tokens that a process holds are already taken
# from the buckets, so holding them longer would let a process spend, after a bucket refilled,
# tokens it took before: the lapse bounds that overrun to LEASE_S of the limit's rate.
LEASE_S = 5.0


@dataclass
class _Lease:
    granted: int
    left: int
    expires_at: float

    def next_size(self) -> int:
        """Doubles while leases are spent before they lapse, and falls to what was used when
        one lapses: a renter seen once a minute takes one token at a time and wastes none,
        while a busy key takes up to MAX_LEASE per round trip."""
        if self.left == 0:
            return min(MAX_LEASE, 2 * self.granted)
        return max(1, self.granted - self.left)


class RedisRateLimiter:
    """Every API process draws on the same Redis buckets, so the budgets are the deployment's.

    A process takes tokens in leases and admits from its lease locally: one Redis round trip
    (one EVALSHA, all of a request's buckets in one atomic script) per lease, not per request
    (redis-py's call per request is a visible share of a read's CPU). Chosen over a local count
    synced in the background, which lets each process overrun the budget by what it admits
    between syncs: a lease is taken from the buckets before any of its requests is admitted, so
    together the processes never admit more than the buckets hold. Leases shrink with what a
    bucket has left (a sixteenth of it, a single token near the limit) and grow only with use,
    so a process holds back little of a budget.
    """

    def __init__(self, redis: Redis, renter_limit: int, clock: Clock = time.time) -> None:
        self._renter_limit = renter_limit
        self._clock = clock
        self._sweeper = _Sweeper(clock)
        # EVALSHA, and EVAL only when the server does not know the script yet.
        self._lease = redis.register_script(_LEASE)
        self._leases: dict[tuple[str, str | None], _Lease] = {}

    async def hit(self, key_id: str, key_limit: int, renter: str | None = None) -> None:
        now = self._clock()
        if self._sweeper.due(now):
            self._leases = {b: x for b, x in self._leases.items() if x.expires_at > now}
        bucket = (key_id, renter)
        held = self._leases.get(bucket)
        if held is not None and held.left > 0 and held.expires_at > now:
            held.left -= 1
            return
        # The Redis Cluster hash tag keeps a key's buckets in one slot, as one script needs.
        keys = [f"botmarket:ratelimit:{{{key_id}}}"]
        drawn = [_Bucket("key", key_limit)]
        if renter is not None:
            keys.insert(0, f"botmarket:ratelimit:{{{key_id}}}:{renter}")
            drawn.insert(0, _Bucket("renter", self._renter_limit))
        size = 1 if held is None else held.next_size()
        reply = await self._lease(
            keys=keys, args=[WINDOW_S, now, size, LEASE_DIVISOR, *(b.limit for b in drawn)]
        )
        granted, wait_ms, empty = (int(x) for x in reply)
        if granted == 0:
            renter_limit = self._renter_limit if renter is not None else None
            raise _refuse(drawn[empty - 1], wait_ms / 1000, key_limit, renter_limit)
        # Requests that ran out at the same moment lease too: their grants add up, none is
        # dropped (the buckets already hold them), and this request takes one.
        current = self._leases.get(bucket)
        left = current.left if current is not None and current is not held else 0
        self._leases[bucket] = _Lease(left + granted, left + granted - 1, now + LEASE_S)


def rate_limiter(redis: Redis | None, renter_limit: int) -> RateLimiter:
    """The deployment's buckets in Redis; without Redis (one process), this process's own."""
    if redis is None:
        return InProcessRateLimiter(renter_limit)
    return RedisRateLimiter(redis, renter_limit)
