"""Market history for backtests: closed candles stored once in the `candles` table, reused.

A window is read from the table; only the candles it lacks are fetched from the configured
exchange's public klines, in pages of `PAGE` (Binance's largest), through the one weight
governor like every other call, and stored before they are used. The symbol's rules (lot,
tick, notional) are stored the same way, once. So a rerun of a window needs no exchange and
reads the same candles and rules. Only closed candles are stored: the forming one would
make two reads of "the same" candle differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.backtests import repository
from app.core.db import session_scope, utcnow
from app.integrations.binance.clients import BinanceClients
from app.integrations.binance.filters import SymbolRules
from app.trading.candles import Candle
from app.trading.market_data import interval_ms

PAGE = 1000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def open_times(timeframe: str, start: datetime, end: datetime) -> range:
    """Open times (ms) of the candles that open in [start, end), on the interval's grid."""
    step = interval_ms(timeframe)
    first = -(-_ms(start) // step) * step
    return range(first, _ms(end), step)


def _missing_spans(wanted: range, stored: set[int]) -> list[tuple[int, int]]:
    """[first, last] open times of each run of wanted candles not stored."""
    spans: list[tuple[int, int]] = []
    for t in wanted:
        if t in stored:
            continue
        if spans and spans[-1][1] == t - wanted.step:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return spans


class History:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        clients: BinanceClients,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clients = clients
        self._clock = clock

    async def candles(
        self, symbol: str, timeframe: str, start: datetime, end: datetime
    ) -> list[Candle]:
        """Every closed candle opening in [start, end), oldest first."""
        now = self._clock()
        step = timedelta(milliseconds=interval_ms(timeframe))
        # A candle has closed once its whole interval lies before now.
        wanted = open_times(timeframe, start, min(end, now - step + timedelta(milliseconds=1)))
        async with self._sessionmaker() as session:
            stored = await repository.candles_between(session, symbol, timeframe, start, end)
        have = {_ms(c.open_time) for c in stored}
        spans = _missing_spans(wanted, have)
        if not spans:
            return stored
        for first, last in spans:
            await self._fetch(symbol, timeframe, first, last, _ms(now))
        async with self._sessionmaker() as session:
            return await repository.candles_between(session, symbol, timeframe, start, end)

    async def rules(self, symbol: str) -> SymbolRules:
        """The symbol's exchange rules as first fetched, then read from the table."""
        async with self._sessionmaker() as session:
            stored = await repository.stored_rules(session, symbol)
        if stored is not None:
            return stored
        rules = await self._clients.rules(symbol)
        async with session_scope(self._sessionmaker) as session:
            await repository.store_rules(session, rules, self._clock())
        async with self._sessionmaker() as session:
            # A concurrent first fetch may have stored its copy first: every run uses that one.
            stored = await repository.stored_rules(session, symbol)
        assert stored is not None
        return stored

    async def _fetch(
        self, symbol: str, timeframe: str, first: int, last: int, closed_before: int
    ) -> None:
        client = await self._clients.public()
        step = interval_ms(timeframe)
        cursor = first
        while cursor <= last:
            rows = await client.klines(symbol, timeframe, cursor, last + step - 1, limit=PAGE)
            closed = [row for row in rows if int(row[6]) < closed_before]
            if closed:
                async with session_scope(self._sessionmaker) as session:
                    await repository.store_candles(session, symbol, timeframe, _parse(closed))
            if len(rows) < PAGE:
                return  # the exchange has nothing further in the span
            cursor = int(rows[-1][0]) + step


def _parse(rows: Sequence[list[Any]]) -> list[Candle]:
    return [Candle.from_kline(row) for row in rows]
