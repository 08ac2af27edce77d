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

The exit index is read from the database once, then kept current from the event outbox: a
position opened, added to, sold from or closed, and a subscription paused, resumed or ended,
each re-reads that subscription's position alone, woken by the events' doorbell (or its own
timer without Redis). A crossed position is read again `stream_refresh_s` after its exit job
was sent: one whose exit did not happen (the price came back before the worker looked) is
watched again; a closed one (what the sale left is dust) is not, until it opens again. One
still open whose price still crosses it is waiting for a worker: it is not sent again (with
the workers behind, every price would add a job to their queue) until `EXIT_RESEND_S` has
passed. Nothing tells the outbox of a renter's changed risk limits: a full reread every
`EXIT_RELOAD_S`, in batches that hold the loop a few milliseconds each, catches those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope
from app.core.settings import Settings
from app.events import feed
from app.events import repository as outbox
from app.events.types import EventType
from app.market_streams import service
from app.market_streams.connections import StreamPool
from app.market_streams.exits import ExitIndex, HeldPosition
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
# The events after which a subscription's position is read again: what changes its quantity,
# its cost, or whether its subscription is active.
POSITION_EVENTS = sorted(
    {
        EventType.position_opened,
        EventType.position_closed,
        EventType.trade_filled,
        EventType.subscription_paused,
        EventType.subscription_resumed,
        EventType.subscription_cancelled,
        EventType.subscription_expiring,
        EventType.subscription_expired,
        EventType.risk_paused,
        EventType.credentials_invalid,
    }
)
# Events read at a time, and positions a batch of the index's full read.
EVENT_BATCH = 500
EXIT_LOAD_BATCH = 500
# How often the index is read whole: a safety net, and the only way a renter's new risk
# limits reach it (no event tells of them).
EXIT_RELOAD_S = 60.0
# How long a sent exit job is trusted to reach a worker while its price stays crossed: until
# then the position, still open and crossed again, is not sent again (with the workers behind,
# every price would add a job to the queue they are behind on). A job lost on the way is sent
# again after it.
EXIT_RESEND_S = 10.0


class MarketStreamFlows:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        enqueue: Enqueue,
        prices: PriceBook,
        lease: Lease,
        events_rung: asyncio.Event | None = None,
    ) -> None:
        """`events_rung`: set by the events' doorbell on every commit that recorded events
        (app/events/doorbell.py); without it the outbox is read every `stream_poll_s`."""
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
        self._rung = events_rung or asyncio.Event()
        self._events_poll_s = (
            settings.stream_poll_s if events_rung is None else settings.stream_safety_poll_s
        )
        # The last event the index reflects; None until it is read.
        self.events_seen: int | None = None
        # Crossed positions, with when to read them again (monotonic).
        self._reread_at: dict[str, float] = {}
        # Positions whose exit job was sent, with when it may be sent again (monotonic): until
        # a position event tells that a worker acted, or a reread finds the price back
        # (`_exit_on_its_way`).
        self._resend_at: dict[str, float] = {}
        # Each symbol's latest price: whether a reread position is still crossed.
        self._latest: dict[str, Decimal] = {}
        # Subscriptions whose position closed since this process began: what a sale leaves
        # (dust, too little to sell) stays in the table as a position, but it has no exit to
        # make. Left out of the index until their next entry.
        self._closed_out: set[str] = set()

    async def run(self) -> None:
        """Stream until cancelled, rereading the wanted streams every `stream_refresh_s`."""
        flusher = asyncio.create_task(self._flush_prices())
        follower = asyncio.create_task(self._follow_positions())
        try:
            while True:
                try:
                    await self.refresh()
                except Exception:  # the database away for a moment: keep what streams
                    log.warning("could not refresh the market streams", exc_info=True)
                await asyncio.sleep(self._settings.stream_refresh_s)
        finally:
            flusher.cancel()
            follower.cancel()
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
        self._latest[event.symbol] = event.price
        if event.price > self._highs.get(event.symbol, event.price - 1):
            self._highs[event.symbol] = event.price
        crossed = self.exits.crossed(event.symbol, event.price)
        if not crossed:
            return
        now = time.monotonic()
        self._reread_at.update(dict.fromkeys(crossed, now + self._settings.stream_refresh_s))
        due = {sub for sub in crossed if self._resend_at.get(sub, now) <= now}
        if due:
            self._resend_at.update(dict.fromkeys(due, now + EXIT_RESEND_S))
            # The crossing price reaches the workers' book before the exit jobs do.
            self._unstored.pop(event.symbol)
            self._spawn(self.exit_crossed({event.symbol: (event.price, datetime.now(UTC))}, due))

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

    async def _follow_positions(self) -> None:
        """Read the index whole, then apply the position events as the doorbell (or the
        timer) says they come, and read it whole again every `EXIT_RELOAD_S`."""
        loaded_at = -EXIT_RELOAD_S
        while True:
            # Cleared before the read: a ring during it makes another read.
            self._rung.clear()
            wait_s = self._events_poll_s
            try:
                if self.events_seen is None or time.monotonic() - loaded_at >= EXIT_RELOAD_S:
                    await self.load_exits()
                    loaded_at = time.monotonic()
                else:
                    await self.follow_events()
                if self._reread_at:  # the crossed positions left are due later
                    next_due = min(self._reread_at.values()) - time.monotonic()
                    wait_s = min(wait_s, max(0.0, next_due))
            except Exception:  # the database away for a moment: the next turn reads again
                log.warning("could not follow the open positions", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rung.wait(), wait_s)

    async def load_exits(self) -> None:
        """Read every open position's levels into a new index, in batches, and put it in
        place. The events from the outbox's head before the read on are applied after it:
        whatever changed during the read is read again."""
        async with self._sessionmaker() as session:
            head = await outbox.head(session) or 0
        index, after = ExitIndex(), ""
        while True:
            async with self._sessionmaker() as session:
                batch = await service.held_positions(session, after=after, batch=EXIT_LOAD_BATCH)
            for held in batch:
                if held.subscription_id not in self._closed_out:
                    index.put(held)
            if len(batch) < EXIT_LOAD_BATCH:
                break
            after = batch[-1].subscription_id
        self.exits = index
        self.events_seen = head
        await self.follow_events()

    async def follow_events(self) -> None:
        """Read again the positions of the subscriptions with position events since the last
        seen, and the crossed positions due for it; put each in the index as it stands."""
        assert self.events_seen is not None, "the index is loaded first"
        # Numbered here if beat has not yet: the index must not wait for its tick. The head
        # is read in a transaction begun after the numbering, which sees it.
        async with self._sessionmaker() as session:
            await feed.sequence_if_behind(self._sessionmaker, session)
        now = time.monotonic()
        subs = {sub for sub, at in self._reread_at.items() if at <= now}
        async with self._sessionmaker() as session:
            head = await outbox.head(session) or 0
            after = self.events_seen
            while after < head:
                events = await outbox.page(session, None, after, head, POSITION_EVENTS, EVENT_BATCH)
                for event in events:
                    if event.subscription_id is None:
                        continue
                    subs.add(event.subscription_id)
                    # A worker acted on the position: its next crossing is a new exit.
                    self._resend_at.pop(event.subscription_id, None)
                    if event.type == EventType.position_closed:
                        self._closed_out.add(event.subscription_id)
                    elif event.type == EventType.position_opened:
                        self._closed_out.discard(event.subscription_id)
                if len(events) < EVENT_BATCH:
                    break
                last = events[-1].seq
                assert last is not None, "a page holds numbered events"
                after = last
            held = await service.held_positions(session, subs) if subs else []
        for sub in subs:
            self.exits.remove(sub)
            self._reread_at.pop(sub, None)
        for position in held:
            sub = position.subscription_id
            if sub in self._closed_out:
                continue
            if self._exit_on_its_way(position, now):
                self._reread_at[sub] = now + self._settings.stream_refresh_s
            else:
                self.exits.put(position)
        self.events_seen = head

    def _exit_on_its_way(self, position: HeldPosition, now: float) -> bool:
        """Whether the position's exit job was sent and may still be waiting for a worker: its
        price still crosses it and it is not due to be sent again. Such a position stays out
        of the index, read again until then. Otherwise its next crossing sends its exit: a
        new one (a job that ran found the price back), or the same one again (lost)."""
        sub = position.subscription_id
        price = self._latest.get(position.symbol)
        if (
            now < self._resend_at.get(sub, now)
            and price is not None
            and ExitIndex([position]).crossed(position.symbol, price)
        ):
            return True
        self._resend_at.pop(sub, None)
        return False

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
