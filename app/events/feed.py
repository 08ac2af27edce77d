"""The sequencer that orders committed events, the feed's pages, erasure and retention.

The feed's cursor is a `seq`. Only the sequencer gives one, to committed events only, one run
at a time under the counter's lock, so the events that have a `seq` are always `1..last_seq`
(less what retention or erasure deleted): a reader that returns `seq > cursor` in order never
skips an event that a slower transaction commits later, because that event gets a higher
`seq` when it does.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import ColumnElement, bindparam
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.core.db import session_scope
from app.core.errors import Unprocessable
from app.core.page_cache import PageCache
from app.core.pagination import bad_cursor, decode_cursor, encode_cursor
from app.core.reads import RowReader, Rows
from app.core.settings import Settings
from app.events import repository
from app.events.repository import Value
from app.events.schemas import EventOut, EventPage
from app.events.types import DEVELOPER_TYPES, OWNER_NOTICES, EventType
from app.models import Event
from app.models.base import ID_LENGTH

SEQUENCE_BATCH = 1000
# How long one call goes on numbering a backlog, batch after batch; the next call goes on.
SEQUENCE_BUDGET = timedelta(seconds=5)
PURGE_BATCH = 1000
# The feed bodies a process keeps: distinct polls within a replica window (a renter's, a
# cursor's, a filter's); past this many, the cache starts over.
_MAX_CACHED_PAGES = 2_000


async def sequence(
    sessionmaker: async_sessionmaker[AsyncSession],
    limit: int = SEQUENCE_BATCH,
    budget: timedelta = SEQUENCE_BUDGET,
) -> int:
    """Number committed events that have no `seq` yet, `limit` per transaction, until a batch
    comes back short or `budget` has passed; returns how many."""
    deadline = time.monotonic() + budget.total_seconds()
    numbered = 0
    while True:
        batch = await _sequence_batch(sessionmaker, limit)
        numbered += batch
        if batch < limit or time.monotonic() >= deadline:
            return numbered


async def _sequence_batch(sessionmaker: async_sessionmaker[AsyncSession], limit: int) -> int:
    try:
        return await _sequence_once(sessionmaker, limit)
    except IntegrityError:
        # Another first run made the counter's row meanwhile: it is there now.
        return await _sequence_once(sessionmaker, limit)


async def _sequence_once(sessionmaker: async_sessionmaker[AsyncSession], limit: int) -> int:
    async with session_scope(sessionmaker) as session:
        last_seq = await repository.lock_counter(session)
        if last_seq is None:
            last_seq = await repository.create_counter(session)
        # Read after the lock, so this statement sees every commit up to the previous run's
        # (READ COMMITTED on MariaDB, a fresh snapshot on SQLite once the write lock is held).
        ids = await repository.unsequenced(session, limit)
        if ids:
            await repository.assign(session, ids, last_seq + 1)
        return len(ids)


async def sequence_if_behind(
    sessionmaker: async_sessionmaker[AsyncSession], read: AsyncSession
) -> None:
    """Number pending events before the live hub's read, so a stream needs no beat to be
    current (the feed's `page` does the same over its row reads). One batch: it holds more
    than a page, and the next read numbers on."""
    if await repository.any_unsequenced(read):
        await _sequence_batch(sessionmaker, SEQUENCE_BATCH)


@dataclass(frozen=True)
class Viewer:
    """Who reads the feed: the key's scope, the renter a marketplace key names (if any), the
    developer's own user, a marketplace key's marketplace."""

    scope: Scope
    principal: str | None = None
    owner_user_id: str | None = None
    marketplace_id: str | None = None

    def visible(self) -> ColumnElement[bool] | None:
        """Which events this reader may see (None: all); the feed, webhooks and a stream's
        replay all ask here."""
        return _visible(self.scope, self.marketplace_id, self.principal, self.owner_user_id)

    @property
    def anonymous(self) -> bool:
        """Whether envelopes leave out the renter (a developer's)."""
        return self.scope is Scope.developer


def _visible(
    scope: Scope,
    marketplace_id: Value | None,
    principal: Value | None,
    owner_user_id: Value | None,
) -> ColumnElement[bool] | None:
    """Viewer.visible, over a viewer's values or over parameters (the feed's page statement
    of a kind of viewer, `_page_view`)."""
    if scope is Scope.admin:
        return None
    if scope is Scope.marketplace:
        assert marketplace_id is not None, "every marketplace key has a marketplace"
        if principal is not None:
            return repository.renter(marketplace_id, principal)
        return repository.renters(marketplace_id)
    return repository.bots_of(owner_user_id, DEVELOPER_TYPES)


@functools.cache
def _page_view(scope: Scope, one_renter: bool, owned: bool, types: int | None) -> Rows:
    """The feed's page statement for every viewer of a kind and a number of `types`: at most
    3 x 2 x 2 x (the event types + 1) statements, each built and compiled once."""
    visible = _visible(
        scope,
        bindparam("marketplace_id"),
        bindparam("principal") if one_renter else None,
        # A parameter is never NULL in SQL's sense (`= NULL` holds for no row): a developer
        # without an owner has a statement of its own, saying IS NULL as Viewer.visible does.
        bindparam("owner_user_id") if owned else None,
    )
    return repository.page_view(visible, types)


@dataclass(frozen=True)
class Addressed:
    """A sequenced event with its bot's owner (None where it has none), as the live hub reads
    it once for every connection: with the event's own columns, whom it concerns."""

    event: Event
    bot_owner: str | None


# Who sees what, once in SQL (Viewer.visible: the feed's pages, webhooks, a stream's replay)
# and once over a row in memory (`sees`: the hub's fan-out of each new event to thousands of
# connections): the same rules, so that a change to one is a change to the other.


def sees(viewer: Viewer, addressed: Addressed) -> bool:
    """Whether the viewer's share holds this event: Viewer.visible over one row."""
    event = addressed.event
    if viewer.scope is Scope.admin:
        return True
    if viewer.scope is Scope.marketplace:
        if event.marketplace_id != viewer.marketplace_id:
            return False
        return viewer.principal is None or event.principal == viewer.principal
    if event.type in OWNER_NOTICES:
        return event.user_id == viewer.owner_user_id
    return (
        addressed.bot_owner is not None
        and addressed.bot_owner == viewer.owner_user_id
        and event.type in DEVELOPER_TYPES
    )


def encode_seq(seq: int) -> str:
    # The cursor spelling lists use for row ids, over a seq written as 32 hex digits.
    return encode_cursor(f"{seq:032x}")


# The largest value of the `seq` column (a signed 64-bit integer on every database).
_MAX_SEQ = 2**63 - 1


def decode_seq(cursor: str, loc: str = "query.after") -> int:
    """The seq behind a feed cursor; one no seq can have (another list's cursor spells any
    32 hex digits) is a 422 naming `loc`, where the database would fail on it."""
    seq = int(decode_cursor(cursor, loc=loc), 16)
    if seq > _MAX_SEQ:
        raise bad_cursor(loc)
    return seq


async def page(
    reader: RowReader,
    sessionmaker: async_sessionmaker[AsyncSession],
    viewer: Viewer,
    after_seq: int,
    types: Collection[str] | None,
    limit: int,
) -> EventPage:
    """Events after `after_seq` that the viewer may see, oldest first.

    `next_cursor` is a full page's last event's. A short page holds every event up to the
    head (the last `seq` committed) that the viewer may see, so its cursor is the head's: a
    filtered poll does not scan again what it found nothing in.

    One statement reads the head, whether committed events wait for a `seq`, and the page up
    to that head, all from one view of what is committed (repository.page_view): every event
    up to the head was numbered and committed with it, so the page holds all of them the
    viewer may see; an event a concurrent sequencer (another poll, the live hub) numbers later
    has a higher `seq`, for the next poll. Where events wait for a `seq`, one batch of them is
    numbered (more than a page; the next poll numbers on), so the feed needs no beat to be
    current, and the statement runs again.
    """
    wanted = sorted(types) if types is not None else ()
    statement = _page_view(
        viewer.scope,
        viewer.principal is not None,
        viewer.owner_user_id is not None,
        None if types is None else len(wanted),
    )
    parameters = {
        "after_seq": after_seq,
        "limit": limit,
        "marketplace_id": viewer.marketplace_id,
        "principal": viewer.principal,
        "owner_user_id": viewer.owner_user_id,
        **{f"type_{n}": name for n, name in enumerate(wanted)},
    }
    head, behind, events = _split(await statement.all(reader, **parameters))
    if behind or head is None:
        # The sequencer's first run also makes the counter, so there is a head after it.
        await _sequence_batch(sessionmaker, SEQUENCE_BATCH)
        head, _, events = _split(await statement.all(reader, **parameters))
        assert head is not None, "the sequencer made the counter"
    # Never behind the position asked from: a counter made again after a purge starts from
    # the highest seq left.
    last_seq = max(head, after_seq)
    if len(events) == limit:
        last_seq = events[-1]["seq"]
    items = [out_of_row(row, anonymous=viewer.anonymous) for row in events]
    return EventPage(items=items, next_cursor=encode_seq(last_seq))


def page_cache(redis: Redis | None, settings: Settings) -> PageCache:
    """Each process's feed bodies, by viewer and query, for `feed_replica_window_s`.

    A canister's poll arrives once from every replica of its subnet, and the replicas agree on
    its answer only if they all get the same bytes: polls that differ only in when they came
    get the page the first of them read, even if events were numbered in between (they are in
    the next page, after its cursor: none is skipped). Erasure evicts every body in every
    process once it commits (its events must not be served again); retention's purge, of
    events a month old, waits out the window."""
    return PageCache(
        redis, settings.database_url, "feed", settings.feed_replica_window_s, _MAX_CACHED_PAGES
    )


def _split(
    rows: list[dict[str, Any]],
) -> tuple[int | None, bool, list[dict[str, Any]]]:
    """The page view's rows as the head, whether events wait for a `seq`, and the page's
    events in `seq` order (a union's rows come in no order of their own)."""
    (position,) = (row for row in rows if row["id"] is None)
    events = sorted((row for row in rows if row["id"] is not None), key=lambda row: row["seq"])
    return position["head"], bool(position["behind"]), events


async def visible_after(
    session: AsyncSession,
    viewer: Viewer,
    after_seq: int,
    types: Collection[str] | None,
    limit: int,
) -> Sequence[Event]:
    """The sequenced events after `after_seq` that the viewer may see, oldest first: a live
    stream's replay, which sends each with its own cursor."""
    return await repository.page(session, viewer.visible(), after_seq, None, types, limit)


async def addressed_after(session: AsyncSession, after_seq: int, limit: int) -> list[Addressed]:
    """Every sequenced event after `after_seq`, oldest first, with whom it concerns."""
    rows = await repository.addressed_after(session, after_seq, limit)
    return [Addressed(event, bot_owner) for event, bot_owner in rows]


_ENVELOPE_ID_PREFIX = "evt_"


def envelope_id(event_id: str) -> str:
    """An event's id as envelopes, webhooks and Server-Sent Events name it."""
    return f"{_ENVELOPE_ID_PREFIX}{event_id}"


async def seq_of_event_id(session: AsyncSession, text: str, loc: str) -> int:
    """The feed position of the event an envelope id names (an SSE client's Last-Event-ID); a
    422 naming `loc` for one that names no event kept, so the client resumes from the feed."""
    event_id = text.removeprefix(_ENVELOPE_ID_PREFIX)
    seq = None
    if text.startswith(_ENVELOPE_ID_PREFIX) and len(event_id) == ID_LENGTH:
        seq = await repository.seq_of(session, event_id)
    if seq is None:
        raise Unprocessable(
            "Last-Event-ID names no event kept: resume from the feed's cursor instead",
            details=[{"loc": loc, "message": "not the id of an event kept"}],
        )
    return seq


def to_out(event: Event, *, anonymous: bool = False) -> EventOut:
    """The envelope; `anonymous` (a developer's view) without the renter or their subscription."""
    return out_of_row({name: getattr(event, name) for name in EventOut.model_fields}, anonymous)


def out_of_row(row: Mapping[str, Any], anonymous: bool = False) -> EventOut:
    """The envelope of an event's columns by name (a row of the feed's page).

    Built without validation: the columns are the outbox's own, written JSON-safe once
    (app/events/service.py), and a feed page renders up to 200 of them a poll."""
    return EventOut.model_construct(
        id=envelope_id(row["id"]),
        type=EventType(row["type"]),
        occurred_at=row["occurred_at"],
        principal=None if anonymous else row["principal"],
        subscription_id=None if anonymous else row["subscription_id"],
        bot_id=row["bot_id"],
        data=row["data"],
    )


async def purge_older_than(
    sessionmaker: async_sessionmaker[AsyncSession],
    now: datetime,
    retention: timedelta,
    batch: int = PURGE_BATCH,
) -> int:
    """Delete every event older than the retention, one short transaction per batch."""
    purged = 0
    while True:
        async with session_scope(sessionmaker) as session:
            deleted = await repository.delete_older_than(session, now - retention, batch)
        purged += deleted
        if deleted < batch:
            return purged
