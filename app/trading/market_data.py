"""Closed candles, fetched once per candle for the whole deployment, and a sweep's latest
prices, read once per symbol (from the market streams when they are fresh).

Only closed candles are used (the forming one would make two reads of "the same" candle
differ), and they are fetched by explicit startTime/endTime so every read of a window is the
same. Each candle is cached under (symbol, interval, open time) in Redis, or in process when
Redis is absent; a per-window named lock makes concurrent readers, in this process or
another, wait for one fetch instead of each asking the exchange.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from redis.asyncio import Redis

from app.core.locks import NamedLocks
from app.integrations.binance.clients import BinanceClients
from app.market_streams.prices import PriceBook
from app.trading.candles import Candle

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
CACHE_TTL_S = 7 * 24 * 3600


def interval_ms(interval: str) -> int:
    return int(interval[:-1]) * _UNIT_MS[interval[-1]]


def last_closed_open_ms(interval: str, now: datetime) -> int:
    """Open time of the latest candle that has closed at `now`."""
    step = interval_ms(interval)
    now_ms = int(now.timestamp() * 1000)
    return (now_ms // step - 1) * step


async def latest_prices(
    clients: BinanceClients,
    symbols: set[str],
    streamed: PriceBook | None = None,
    max_age_s: float = 0.0,
) -> dict[str, Decimal]:
    """The latest price of each symbol, read once per sweep however many renters hold it:
    the streamed one when it was seen within `max_age_s`, else the exchange's."""
    prices = await streamed.fresh(symbols, max_age_s) if streamed is not None else {}
    missing = sorted(symbols - prices.keys())
    if missing:
        client = await clients.public()
        prices.update({symbol: await client.price(symbol) for symbol in missing})
    return prices


class CandleCache(Protocol):
    async def get_many(self, key: str, open_times: Sequence[int]) -> list[list[Any] | None]: ...

    async def put_many(self, key: str, rows: Sequence[list[Any]]) -> None: ...


class MemoryCandleCache:
    def __init__(self) -> None:
        self._rows: dict[str, dict[int, list[Any]]] = {}

    async def get_many(self, key: str, open_times: Sequence[int]) -> list[list[Any] | None]:
        series = self._rows.get(key, {})
        return [series.get(t) for t in open_times]

    async def put_many(self, key: str, rows: Sequence[list[Any]]) -> None:
        self._rows.setdefault(key, {}).update({int(row[0]): row for row in rows})


class RedisCandleCache:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get_many(self, key: str, open_times: Sequence[int]) -> list[list[Any] | None]:
        if not open_times:
            return []
        raw = await self._redis.hmget(key, [str(t) for t in open_times])
        return [json.loads(value) if value is not None else None for value in raw]

    async def put_many(self, key: str, rows: Sequence[list[Any]]) -> None:
        if rows:
            await self._redis.hset(key, mapping={str(r[0]): json.dumps(r) for r in rows})
            await self._redis.expire(key, CACHE_TTL_S)


class MarketData:
    def __init__(self, clients: BinanceClients, cache: CandleCache, locks: NamedLocks) -> None:
        self._clients = clients
        self._cache = cache
        self._locks = locks

    async def closed_candles(
        self, symbol: str, interval: str, count: int, now: datetime | None = None
    ) -> list[Candle]:
        step = interval_ms(interval)
        last = last_closed_open_ms(interval, now or datetime.now(UTC))
        open_times = [last - step * i for i in range(count - 1, -1, -1)]
        key = f"botmarket:candles:{symbol}:{interval}"
        rows = await self._cache.get_many(key, open_times)
        if any(row is None for row in rows):
            window = f"{key}:{open_times[0]}:{last}"
            async with self._locks.hold(window):
                rows = await self._cache.get_many(key, open_times)  # filled while we waited?
                if any(row is None for row in rows):
                    client = await self._clients.public()
                    fetched = await client.klines(
                        symbol, interval, open_times[0], last + step - 1, limit=count
                    )
                    await self._cache.put_many(key, fetched)
                    rows = await self._cache.get_many(key, open_times)
        missing = sum(row is None for row in rows)
        if missing:
            raise LookupError(f"the exchange has no {interval} candles for {symbol} ({missing})")
        return [Candle.from_kline(row) for row in rows if row is not None]
