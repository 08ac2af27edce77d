"""Every streamed symbol's latest price, where the workers read it: Redis when configured,
the database otherwise (the embedded default).

The stream process writes what changed at most every `FLUSH_INTERVAL_S`, one round trip for
all symbols; a reader takes a price seen within `max_age_s` and asks the exchange for the
others, so a missing stream (or none at all) costs a REST read, never a stale price.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope
from app.market_streams import repository

FLUSH_INTERVAL_S = 0.5
REDIS_KEY = "market:latest-prices"  # hash: symbol -> "<price> <observed epoch ms>"

Seen = Mapping[str, tuple[Decimal, datetime]]


class PriceBook(Protocol):
    async def store(self, prices: Seen) -> None: ...

    async def fresh(self, symbols: Iterable[str], max_age_s: float) -> dict[str, Decimal]: ...


class RedisPriceBook:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def store(self, prices: Seen) -> None:
        if prices:
            items = [
                part
                for symbol, (price, at) in prices.items()
                for part in (symbol, f"{price} {int(at.timestamp() * 1000)}")
            ]
            await self._redis.hset(REDIS_KEY, items=items)

    async def fresh(self, symbols: Iterable[str], max_age_s: float) -> dict[str, Decimal]:
        wanted = sorted(set(symbols))
        if not wanted:
            return {}
        values = await self._redis.hmget(REDIS_KEY, wanted)
        oldest_ms = (datetime.now(UTC).timestamp() - max_age_s) * 1000
        fresh = {}
        for symbol, value in zip(wanted, values, strict=True):
            if value is not None:
                text = value.decode() if isinstance(value, bytes) else value
                price, seen_ms = text.split()
                if int(seen_ms) >= oldest_ms:
                    fresh[symbol] = Decimal(price)
        return fresh


class DatabasePriceBook:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def store(self, prices: Seen) -> None:
        if prices:
            async with session_scope(self._sessionmaker) as session:
                await repository.store_prices(session, prices)

    async def fresh(self, symbols: Iterable[str], max_age_s: float) -> dict[str, Decimal]:
        since = datetime.now(UTC) - timedelta(seconds=max_age_s)
        async with self._sessionmaker() as session:
            return await repository.prices_seen_since(session, symbols, since)


def price_book(redis: Redis | None, sessionmaker: async_sessionmaker[AsyncSession]) -> PriceBook:
    return RedisPriceBook(redis) if redis is not None else DatabasePriceBook(sessionmaker)
