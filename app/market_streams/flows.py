"""The stream process's work: follow the database's wanted streams, act on what they carry.

Every price seen goes to the workers' price book (app/market_streams/prices.py), where orders
and exits read it instead of asking the exchange, and is checked against the open positions'
exit levels (app/market_streams/exits.py): a crossing sends that subscription's `trading.exit`
job, which the executor's exit key makes happen once per entry however often it is sent.

A closed kline sends the decide job of every group of its (symbol, timeframe) at once, as
beat's dispatch would on its next tick; the next candle's first update and a (re)subscribed
kline stream tell the latest close too, and every close since the last seen is sent, so a
close missed while a stream was silent or a connection down is decided too. Beat's dispatch stays
the safety net: a group decided already is not sent, and a second job for the same candle
finds the decision (or its claim) and makes none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope
from app.core.settings import Settings
from app.market_streams import service
from app.market_streams.connections import StreamPool
from app.market_streams.exits import ExitIndex
from app.market_streams.lease import Lease
from app.market_streams.names import KlineClosed, PriceUpdate, market_of, read_payload
from app.market_streams.prices import FLUSH_INTERVAL_S, PriceBook
from app.trading import repository as trading
from app.trading.flows import (
    DECIDE_BATCH,
    Enqueue,
    candle_close,
    due_groups,
    send_decide_jobs,
)
from app.trading.market_data import interval_ms

log = logging.getLogger(__name__)
# Closes of one market decided after an outage, the latest ones: a longer outage's older
# candles are left undecided (their orders would be long stale).
CATCH_UP = 60


class MarketStreamFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        enqueue: Enqueue,
        prices: PriceBook,
        lease: Lease,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._enqueue = enqueue
        self._prices = prices
        self._lease = lease
        # Prices seen since the last flush to the price book, the latest of each symbol.
        self._unstored: dict[str, tuple[Decimal, datetime]] = {}
        # Each symbol's highest price since the positions' peaks were last raised.
        self._highs: dict[str, Decimal] = {}
        self.pool = StreamPool(
            settings.binance_stream_url,
            self.on_data,
            self.on_subscribed,
            settings.stream_max_per_connection,
        )
        # The latest close each market's decide jobs were sent for: a close is sent once
        # however often it arrives (a reconnect's catch-up, a repeated frame).
        self._closed: dict[tuple[str, str], datetime] = {}
        self._work: set[asyncio.Task[None]] = set()
        self.exits = ExitIndex()

    async def run(self) -> None:
        """Stream until cancelled, rereading the wanted streams every `stream_refresh_s`."""
        flusher = asyncio.create_task(self._flush_prices())
        try:
            while True:
                try:
                    await self.refresh()
                except Exception:  # the database away for a moment: keep what streams
                    log.warning("could not refresh the market streams", exc_info=True)
                await asyncio.sleep(self._settings.stream_refresh_s)
        finally:
            flusher.cancel()
            await self.pool.close()
            for task in self._work:
                task.cancel()

    async def refresh(self) -> None:
        highs, self._highs = self._highs, {}
        try:
            await self._raise_peaks(highs)
        except Exception:
            self._highs = {s: max(h, self._highs.get(s, h)) for s, h in highs.items()}
            raise
        async with self._sessionmaker() as session:
            wanted = await service.wanted_streams(session)
            self.exits.rebuild(await service.exit_levels_of_open_positions(session))
        self.pool.want(wanted)
        await self.pool.prune()

    def on_data(self, stream: str, data: object) -> None:
        for event in read_payload(data):
            if isinstance(event, KlineClosed):
                # Most kline frames are a forming candle's: its close is known, no task needed.
                closes = self._closes_due(event.symbol, event.timeframe, event.close_at)
                if closes:
                    self._spawn(self._decide(event.symbol, event.timeframe, closes))
            else:
                self._price(event)

    def _price(self, event: PriceUpdate) -> None:
        self._unstored[event.symbol] = (event.price, datetime.now(UTC))
        if event.price > self._highs.get(event.symbol, event.price - 1):
            self._highs[event.symbol] = event.price
        crossed = self.exits.crossed(event.symbol, event.price)
        if crossed:
            # The crossing price reaches the workers' book before the exit jobs do.
            self._unstored.pop(event.symbol)
            self._spawn(
                self.exit_crossed({event.symbol: (event.price, datetime.now(UTC))}, crossed)
            )

    def on_subscribed(self, streams: list[str]) -> None:
        now = datetime.now(UTC)
        for stream in streams:
            market = market_of(stream)
            if market is not None:
                self._spawn(self.kline_closed(*market, now))

    def _closes_due(self, symbol: str, timeframe: str, close: datetime) -> list[datetime]:
        """The closes of the market to decide now, oldest first: the latest closed at `close`
        (or before) and every one since the last this process saw, at most `CATCH_UP`; none
        when it saw that close already (a repeated frame, a closing update after the next
        candle's first)."""
        close = candle_close(timeframe, close)
        market = (symbol, timeframe)
        last = self._closed.get(market)
        if last is not None and close <= last:
            return []
        self._closed[market] = close
        step = timedelta(milliseconds=interval_ms(timeframe))
        missed = 0 if last is None else min(CATCH_UP, (close - last) // step) - 1
        return [close - step * back for back in range(missed, -1, -1)]

    async def kline_closed(self, symbol: str, timeframe: str, close: datetime) -> None:
        """Send the decide jobs of the (symbol, timeframe) groups whose candle closed at
        `close` (or at the latest close before it) and of the closes missed since the last
        seen, for the groups without a decision of that candle."""
        # Chosen before any await: frames handled one after another never choose a close twice.
        await self._decide(symbol, timeframe, self._closes_due(symbol, timeframe, close))

    async def _decide(self, symbol: str, timeframe: str, closes: list[datetime]) -> None:
        market = (symbol, timeframe)
        for due_close in closes:
            async with self._sessionmaker() as session:
                due = await due_groups(session, due_close, market)
            if not due:
                continue
            if not await self._lease.holds():  # a standby's work now: send nothing
                return
            await send_decide_jobs(self._enqueue, due, DECIDE_BATCH)
            log.info(
                "decide jobs sent on a candle's close",
                extra={
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "close": due_close.isoformat(),
                    "groups": len(due),
                },
            )

    async def exit_crossed(
        self, price: dict[str, tuple[Decimal, datetime]], sub_ids: set[str]
    ) -> None:
        """Send the exit jobs of the subscriptions a price crossed, once the price and the
        symbol's high (a trailing stop's peak) are stored: the worker checks the exit against
        what the index did."""
        await self._prices.store(price)
        await self._raise_peaks({s: self._highs[s] for s in price if s in self._highs})
        if not await self._lease.holds():
            return
        for sub_id in sorted(sub_ids):
            await self._enqueue("trading.exit", {"subscription_id": sub_id})
        log.info("exit jobs sent on a price crossing", extra={"subscriptions": len(sub_ids)})

    async def _raise_peaks(self, highs: dict[str, Decimal]) -> None:
        """The peaks of the positions with a trailing stop raised to their symbol's streamed
        high: with the streams watching, beat's exit pass (which raised them before) leaves
        those positions alone."""
        held = {s: h for s, h in highs.items() if s in self.exits.trailing_symbols}
        if held:
            async with session_scope(self._sessionmaker) as session:
                await trading.raise_peaks(session, held)

    async def _flush_prices(self) -> None:
        """The prices seen, to the workers' price book: one write for every symbol a flush."""
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            seen, self._unstored = self._unstored, {}
            try:
                await self._prices.store(seen)
            except Exception:  # the readers fall back to the exchange meanwhile
                log.warning("could not store the latest prices", exc_info=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("market stream work failed", exc_info=task.exception())
