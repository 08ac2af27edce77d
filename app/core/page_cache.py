"""Response bodies kept by each API process for a few seconds, evicted together everywhere
when what they show changes.

For a GET read far more often than its answer changes, or asked the same question many times
at once: a body is read, rendered and serialised once per `ttl_s`, process and key instead of
on every request (the statement, the rows' conversion and the JSON are most of such a
request's CPU), and identical requests in flight together share one read (app/core/cache.py).
Keys are still checked and counted on every request: a cache sits behind the route's
authorisation, keyed by what the caller may see.

A change that must show at once evicts every body, in its own process and, through Redis, in
the others, once its transaction commits (app/core/evictions.py). The TTL bounds how long a
body can be stale when an eviction is lost, or after a change that evicts nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import TtlCache
from app.core.evictions import Evictions, channel_of


class PageCache:
    def __init__(
        self, redis: Redis | None, database_url: str, name: str, ttl_s: float, max_pages: int
    ) -> None:
        # A key is whatever tells two bodies apart (a cursor, a size, a viewer); past
        # `max_pages` of them, the cache starts over. A TTL of 0 keeps nothing, and shares no
        # read either: each request reads after it came.
        self._pages: TtlCache[Hashable, bytes] | None = (
            TtlCache(ttl_s, max_pages) if ttl_s > 0 else None
        )
        # Any change may move any page: every eviction empties the whole cache.
        self.changes = Evictions(
            redis,
            channel_of(database_url, f"{name}-changed"),
            lambda _: self._clear(),
            self._clear,
        )

    async def page(self, key: Hashable, render: Callable[[], Awaitable[bytes]]) -> bytes:
        if self._pages is None:
            return await render()
        return await self._pages.get(key, render)

    def _clear(self) -> None:
        if self._pages is not None:
            self._pages.clear()

    def changed(self, session: AsyncSession) -> None:
        """Once `session` commits, every process's pages are evicted."""
        self.changes.after_commit(session, "changed")

    def stop(self) -> None:
        self.changes.stop()

    async def listen_for_changes(self, retry_s: float = 1.0) -> None:
        """Evict when other processes change what the pages show, until stop()."""
        await self.changes.listen(retry_s)
