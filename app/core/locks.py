"""A named lock for "only one of us does this": asyncio within a process, Redis across them.

Without Redis only the process-local half exists; callers keep a database constraint as the
last word. The Redis half expires by itself, so a holder that dies cannot block forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class NamedLocks:
    def __init__(self, redis: Redis | None, ttl_s: float = 60.0) -> None:
        self._redis = redis
        self._ttl_ms = int(ttl_s * 1000)
        self._local: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock = self._local.setdefault(name, asyncio.Lock())
        self._waiters[name] = self._waiters.get(name, 0) + 1
        try:
            async with lock:
                token = await self._acquire_shared(name)
                try:
                    yield
                finally:
                    if token is not None and self._redis is not None:
                        await self._redis.eval(_RELEASE, 1, f"lock:{name}", token)
        finally:
            self._waiters[name] -= 1
            if not self._waiters[name]:  # forget idle locks so the map stays small
                del self._waiters[name]
                self._local.pop(name, None)

    async def _acquire_shared(self, name: str) -> str | None:
        if self._redis is None:
            return None
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self._ttl_ms / 1000
        # Polling is the point: another process holds the key until it deletes or it expires.
        while not await self._redis.set(f"lock:{name}", token, nx=True, px=self._ttl_ms):
            if time.monotonic() > deadline:
                return None  # the holder died; its key has expired or is about to
            await asyncio.sleep(0.05)
        return token
