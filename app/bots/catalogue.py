"""The catalogue's pages as served, kept by each API process for a few seconds.

`GET /api/v1/bots` is the same for every caller and read far more often than bots change: a
page is read, validated and serialised once per CATALOGUE_TTL_S and process instead of on
every request (app/core/page_cache.py).

A bot created or changed through the API evicts every page, in its own process and, through
Redis, in the others, once its transaction commits: its writer's next read lists it, another
process's within milliseconds. The TTL bounds how long a page can be stale when an eviction is
lost, or after a change made outside the API (the CLI, SQL).
"""

from __future__ import annotations

from redis.asyncio import Redis

from app.core.page_cache import PageCache

CATALOGUE_TTL_S = 5.0
# A page is keyed by its cursor and size: a client walking the whole catalogue in pages of
# one could make many; past this many, the cache starts over.
_MAX_PAGES = 1_000


def catalogue(redis: Redis | None, database_url: str) -> PageCache:
    return PageCache(redis, database_url, "catalogue", CATALOGUE_TTL_S, _MAX_PAGES)
