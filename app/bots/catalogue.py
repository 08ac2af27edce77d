"""The catalogue's pages as served, kept by each API process for a few seconds.

`GET /api/v1/bots` is the same for every caller and read far more often than bots change: a
page is read, validated and serialised once per CATALOGUE_TTL_S and process instead of on
every request (the statement, the rows' conversion and validation and the JSON are most of a
page's CPU). Keys are still checked and counted on every request.

A bot created or changed through the API evicts every page, in its own process and, through
Redis, in the others, once its transaction commits (app/core/evictions.py): its writer's next
read lists it, another process's within milliseconds. The TTL bounds how long a page can be
stale when an eviction is lost, or after a change made outside the API (the CLI, SQL).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cache import TtlCache
from app.core.evictions import Evictions, channel_of

CATALOGUE_TTL_S = 5.0
# A page is keyed by its cursor and size: a client walking the whole catalogue in pages of
# one could make many; past this many, the cache starts over.
_MAX_PAGES = 1_000


class Catalogue:
    def __init__(self, redis: Redis | None, database_url: str) -> None:
        # (the id the page starts after, its size) -> the response body
        self._pages: TtlCache[tuple[str, int], bytes] = TtlCache(CATALOGUE_TTL_S, _MAX_PAGES)
        # Any change may move any page: every eviction empties the whole cache.
        self.changes = Evictions(
            redis,
            channel_of(database_url, "catalogue-changed"),
            lambda _: self._pages.clear(),
            self._pages.clear,
        )

    async def page(
        self, after_id: str | None, limit: int, render: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        return await self._pages.get((after_id or "", limit), render)

    def changed(self, session: AsyncSession) -> None:
        """Once `session` commits a change to a bot, every process's pages are evicted."""
        self.changes.after_commit(session, "bots")

    def stop(self) -> None:
        self.changes.stop()

    async def listen_for_changes(self, retry_s: float = 1.0) -> None:
        """Evict when other processes change a bot, until stop()."""
        await self.changes.listen(retry_s)
