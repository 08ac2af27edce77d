"""Each API process's fan-out of new events to its live connections.

One hub task per process. Woken by the doorbell, or by its own timer, it numbers committed
events (so it needs no beat to be current), reads every event after the last one it handed on,
once for all its connections, and offers each to every connection whose viewer may see it
(feed.sees). A connection holds at most `capacity` events not yet sent: one that falls further
behind is dropped, and resumes with its cursor, rather than growing the server's memory. Every
`revocation_check_s` (the API key cache's TTL: as fast as a revoked key's requests stop) it
ends the connections whose opening key was revoked since: a leaked key's thief must not go on
streaming after the revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys import repository as api_keys
from app.core.metrics import ApiMetrics
from app.events import feed, repository
from app.events.doorbell import Doorbell
from app.events.schemas import EventOut, StreamFrame
from app.models import Event

log = logging.getLogger(__name__)

# Events read from the outbox at a time.
HUB_BATCH = 500


class SlowClient(Exception):
    """The connection fell more than its queue behind and is dropped."""


class Delivery:
    """One event as every connection sends it, rendered once per kind of view (with or
    without the renter) however many connections send it."""

    __slots__ = ("_event", "_rendered", "cursor", "event_id", "seq", "type")

    def __init__(self, event: Event) -> None:
        assert event.seq is not None, "the hub hands on sequenced events only"
        self._event = event
        self.seq: int = event.seq
        self.type = event.type
        self.cursor = feed.encode_seq(event.seq)
        self.event_id = feed.envelope_id(event.id)
        self._rendered: dict[tuple[str, bool], str] = {}

    def envelope(self, anonymous: bool) -> str:
        """The envelope's JSON, as the feed serves it (an SSE event's data)."""
        return self._render("envelope", anonymous, lambda out: out.model_dump_json())

    def frame(self, anonymous: bool) -> str:
        """The WebSocket frame: the envelope with its cursor."""
        return self._render(
            "frame",
            anonymous,
            lambda out: StreamFrame(cursor=self.cursor, event=out).model_dump_json(),
        )

    def _render(self, kind: str, anonymous: bool, render: Callable[[EventOut], str]) -> str:
        rendered = self._rendered.get((kind, anonymous))
        if rendered is None:
            out = feed.to_out(self._event, anonymous=anonymous)
            rendered = self._rendered[(kind, anonymous)] = render(out)
        return rendered


class Subscriber:
    """One connection's place at the hub: whose events it takes, and those not yet sent."""

    def __init__(self, viewer: feed.Viewer, api_key_id: str, capacity: int) -> None:
        self.viewer = viewer
        self.api_key_id = api_key_id
        self._capacity = capacity
        self._waiting: deque[Delivery] = deque()
        self._ready = asyncio.Event()
        self.dropped = asyncio.Event()
        self.revoked = False

    def revoke(self) -> None:
        """The key that opened the connection was revoked: drop it, sending nothing more."""
        self.revoked = True
        self._waiting.clear()
        self.dropped.set()
        self._ready.set()

    def offer(self, addressed: feed.Addressed, delivery: Delivery) -> bool:
        """Queue the event if the viewer may see it; True if that overflows the queue and
        drops the connection."""
        if self.dropped.is_set() or not feed.sees(self.viewer, addressed):
            return False
        if len(self._waiting) >= self._capacity:
            self._waiting.clear()
            self.dropped.set()
            self._ready.set()
            return True
        self._waiting.append(delivery)
        self._ready.set()
        return False

    async def next(self) -> Delivery:
        """The next event handed on; SlowClient once the connection is dropped."""
        while not self._waiting and not self.dropped.is_set():
            self._ready.clear()
            await self._ready.wait()
        if self.dropped.is_set():
            raise SlowClient
        return self._waiting.popleft()


class Hub:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        reads: async_sessionmaker[AsyncSession],
        doorbell: Doorbell,
        poll_s: float,
        capacity: int,
        metrics: ApiMetrics,
        revocation_check_s: float,
    ) -> None:
        self._sessionmaker, self._reads = sessionmaker, reads
        self._doorbell = doorbell
        self._poll_s = poll_s
        self._revocation_check_s = revocation_check_s
        self._capacity = capacity
        self._metrics = metrics
        # Connections that follow one renter, by principal, and the others (developers',
        # admins'): an event is offered to its renter's and to the others only, so a batch
        # costs its events times the connections that might see them, not times them all.
        # Whether each may see it is still feed.sees's to say.
        self._renters: dict[str, set[Subscriber]] = {}
        self._others: set[Subscriber] = set()
        self._stopping = asyncio.Event()
        # The last event handed on: every later one will be, in order.
        self.last_seq = 0

    def subscribe(self, viewer: feed.Viewer, api_key_id: str) -> Subscriber:
        """A connection's place, taking every event after `last_seq` that the viewer sees,
        until `api_key_id` is revoked."""
        subscriber = Subscriber(viewer, api_key_id, self._capacity)
        if viewer.principal is None:
            self._others.add(subscriber)
        else:
            self._renters.setdefault(viewer.principal, set()).add(subscriber)
        self._metrics.stream_connections.inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        principal = subscriber.viewer.principal
        followers = self._others if principal is None else self._renters.get(principal, set())
        if subscriber not in followers:
            return
        followers.discard(subscriber)
        if principal is not None and not followers:
            del self._renters[principal]
        self._metrics.stream_connections.dec()

    async def run(self) -> None:
        """Hand on new events whenever the doorbell rings or the timer runs out, until stop().

        It begins at the newest event (a connection that wants older ones replays them), once
        the database answers: a process starts, and reports itself unready, without it."""
        begun = False
        next_check = time.monotonic() + self._revocation_check_s
        while not self._stopping.is_set():
            # Cleared before the read: a ring during it makes another read.
            self._doorbell.rung.clear()
            try:
                if begun:
                    await self._deliver_new()
                else:
                    async with self._reads() as session:
                        self.last_seq = await repository.head(session) or 0
                    begun = True
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self._revocation_check_s
                    await self._end_revoked()
            except Exception:  # the next ring or tick reads again from last_seq
                log.exception("the live hub could not read new events")
            wait_s = min(self._poll_s, max(0.0, next_check - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._doorbell.rung.wait(), wait_s)

    async def _deliver_new(self) -> None:
        async with self._reads() as session:
            await feed.sequence_if_behind(self._sessionmaker, session)
            while True:
                batch = await feed.addressed_after(session, self.last_seq, HUB_BATCH)
                self._fan_out(batch)
                if len(batch) < HUB_BATCH:
                    return

    async def _end_revoked(self) -> None:
        """Drop the connections whose opening key is revoked: one read of the few keys behind
        all of them (a marketplace's thousands of renters stream with tickets of its key)."""
        subscribers = list(itertools.chain(self._others, *self._renters.values()))
        if not subscribers:
            return
        async with self._reads() as session:
            revoked = await api_keys.revoked_among(session, {s.api_key_id for s in subscribers})
        for subscriber in subscribers:
            if subscriber.api_key_id in revoked:
                subscriber.revoke()

    def _fan_out(self, batch: list[feed.Addressed]) -> None:
        for addressed in batch:
            delivery = Delivery(addressed.event)
            renter = addressed.event.principal
            renters = self._renters.get(renter, ()) if renter else ()
            for subscriber in itertools.chain(self._others, renters):
                if subscriber.offer(addressed, delivery):
                    self._metrics.stream_dropped.inc()
            self.last_seq = delivery.seq

    def stop(self) -> None:
        self._stopping.set()
        self._doorbell.rung.set()
