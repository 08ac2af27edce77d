"""Evictions from a per-process cache, told to every API process through Redis pub/sub.

Each API process caches what it read (API keys, catalogue pages); a change is committed by one
of them. Once the change's transaction commits, that process evicts at once and publishes the
evicted key on the cache's channel, and every process listening evicts it too. Not before the
commit: until then this or another process could read the old row again and cache it. A
message published while a process was not listening is lost, so (re)subscribing empties the
whole cache; a publish that fails is bounded by the cache's time to live.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

# The longest the listener reads before it looks whether it should stop.
_LISTEN_POLL_S = 1.0


def channel_of(database_url: str, cache: str) -> str:
    """The channel of a cache's evictions in one deployment. Pub/sub channels are global to a
    Redis server, whatever its database index: deployments (or test runs) sharing a server
    would otherwise evict each other's caches. A deployment is told apart by its database."""
    url = make_url(database_url)
    where = f"{url.drivername}://{url.host}:{url.port}/{url.database}"
    return f"botmarket:{hashlib.sha256(where.encode()).hexdigest()[:12]}:{cache}"


class Evictions:
    def __init__(
        self,
        redis: Redis | None,
        channel: str,
        forget: Callable[[str], None],
        clear: Callable[[], None],
    ) -> None:
        self._redis = redis
        self.channel = channel
        self._forget = forget
        self._clear = clear
        self._stopping = asyncio.Event()
        self._publishing: set[asyncio.Task[None]] = set()

    def after_commit(self, session: AsyncSession, key: str) -> None:
        """Evict `key` here and in every process once `session` commits."""
        event.listen(session.sync_session, "after_commit", lambda _: self._evict(key), once=True)

    def _evict(self, key: str) -> None:
        self._forget(key)
        if self._redis is not None:
            # The commit hook runs on the loop that committed (a greenlet of it).
            task = asyncio.get_running_loop().create_task(self._publish(key))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def _publish(self, key: str) -> None:
        assert self._redis is not None
        try:
            await self._redis.publish(self.channel, key)
        except Exception:  # the other processes' cache TTL still bounds the delay
            log.warning("could not publish an eviction", extra={"channel": self.channel})

    def stop(self) -> None:
        self._stopping.set()

    async def listen(self, retry_s: float = 1.0) -> None:
        """Evict what other processes publish, until stop(). A lost Redis connection (a
        restart, a failover) is retried, never the end of listening.

        Stopped by a flag, not only by cancellation: redis-py's PubSub.subscribe can swallow a
        cancellation that arrives while it subscribes, and listen()'s unbounded read then
        never returned, hanging shutdown. Reads here end every _LISTEN_POLL_S instead.
        """
        if self._redis is None:
            return
        while not self._stopping.is_set():
            try:
                await self._listen(self._redis)
            except RedisError as exc:
                log.warning(
                    "eviction listener lost redis; retrying",
                    extra={"channel": self.channel, "error": str(exc)},
                )
                await asyncio.sleep(retry_s)

    async def _listen(self, redis: Redis) -> None:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # What was published while nobody here listened is lost: forget everything.
            self._clear()
            while not self._stopping.is_set():
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_LISTEN_POLL_S
                )
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    self._forget(data.decode() if isinstance(data, bytes) else data)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
