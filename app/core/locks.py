"""A named lock for "only one of us does this": asyncio within a process, Redis across them.

Without Redis only the process-local half exists. The Redis half is redis-py's lock, which
expires by itself, so a holder that dies cannot block the others for longer than its TTL.
It only spares duplicate work: callers must stay correct without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import LockError


class NamedLocks:
    def __init__(self, redis: Redis | None, ttl_s: float = 60.0) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._local: dict[str, asyncio.Lock] = {}
        self._waiters: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock = self._local.setdefault(name, asyncio.Lock())
        self._waiters[name] = self._waiters.get(name, 0) + 1
        try:
            async with lock:
                if self._redis is None:
                    yield
                    return
                shared = self._redis.lock(
                    f"lock:{name}", timeout=self._ttl_s, sleep=0.05, blocking_timeout=self._ttl_s
                )
                # Not acquired within the TTL: the holder died and its key has expired or is
                # about to; go ahead rather than wait again.
                acquired = await shared.acquire()
                try:
                    yield
                finally:
                    if acquired:
                        with contextlib.suppress(LockError):  # expired while we held it
                            await shared.release()
        finally:
            self._waiters[name] -= 1
            if not self._waiters[name]:  # forget idle locks so the map stays small
                del self._waiters[name]
                self._local.pop(name, None)
