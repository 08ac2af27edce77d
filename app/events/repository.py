"""SQL of the event outbox: the sequencer's counter and numbering, the feed's and the live
hub's reads, erasure and purge; the live stream's tickets."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Boolean,
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.reads import Rows
from app.events.schemas import EventOut
from app.events.types import OWNER_NOTICES, EventType
from app.models import ApiKey, Bot, Event, EventSequence, StreamTicket

# The counters' rows: the last `seq` given, and the last one the webhooks' dispatcher read.
SEQUENCER = 1
WEBHOOK_DISPATCH = 2


async def lock_counter(session: AsyncSession, counter: int = SEQUENCER) -> int | None:
    """The counter's `seq` (the sequencer's: the last given), with its row locked until this
    transaction ends; None when the counter has no row yet.

    An UPDATE rather than SELECT ... FOR UPDATE: it takes SQLite's write lock too, and a
    transaction that starts by writing waits its turn there, where one that read first fails
    with "database is locked" once another writer commits.
    """
    touched = await session.execute(
        update(EventSequence)
        .where(EventSequence.id == counter)
        .values(last_seq=EventSequence.last_seq)
    )
    if touched.rowcount == 0:  # type: ignore[attr-defined]
        return None
    return await session.scalar(select(EventSequence.last_seq).where(EventSequence.id == counter))


async def create_counter(
    session: AsyncSession, counter: int = SEQUENCER, at: int | None = None
) -> int:
    """Make the counter's row at `at`, by default the highest `seq` already given; returns
    where it is.

    Two first runs at once both insert: the second fails on the primary key and its caller
    retries, finding the row."""
    if at is None:
        highest = await session.scalar(select(func.coalesce(func.max(Event.seq), 0)))
        assert highest is not None
        at = int(highest)
    await session.execute(insert(EventSequence).values(id=counter, last_seq=at))
    return at


async def move_counter(session: AsyncSession, counter: int, seq: int) -> None:
    await session.execute(
        update(EventSequence).where(EventSequence.id == counter).values(last_seq=seq)
    )


async def unsequenced(session: AsyncSession, limit: int) -> Sequence[str]:
    """Ids of committed events without a `seq`, oldest first."""
    return (
        await session.scalars(
            select(Event.id)
            .where(Event.seq.is_(None))
            .order_by(Event.occurred_at, Event.id)
            .limit(limit)
        )
    ).all()


async def assign(session: AsyncSession, ids: Sequence[str], first_seq: int) -> None:
    """Number `ids` from `first_seq` on, in their order, and move the counter past them: one
    UPDATE for the batch rather than a round trip per event."""
    await session.execute(
        update(Event)
        .where(Event.id.in_(ids))
        .values(
            seq=case({event_id: first_seq + n for n, event_id in enumerate(ids)}, value=Event.id)
        )
        .execution_options(synchronize_session=False)
    )
    await move_counter(session, SEQUENCER, first_seq + len(ids) - 1)


async def head(session: AsyncSession) -> int | None:
    """The last `seq` committed: every event up to it was numbered and committed with it.
    None before the first run."""
    return await session.scalar(select(EventSequence.last_seq).where(EventSequence.id == SEQUENCER))


_ANY_UNSEQUENCED = exists().where(Event.seq.is_(None))


async def any_unsequenced(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(_ANY_UNSEQUENCED)))


# The feed's position: the head (the last `seq` committed; None before the sequencer's first
# run) and whether any committed event still waits for its `seq`.
_HEAD = select(EventSequence.last_seq).where(EventSequence.id == SEQUENCER).scalar_subquery()


async def exhausted_recorded(session: AsyncSession, bot_id: str, day: str) -> bool:
    """Whether the bot's `budget.exhausted` for this budget day is recorded already."""
    told = await session.scalar(
        select(Event.id)
        .where(
            Event.bot_id == bot_id,
            Event.type == EventType.budget_exhausted.value,
            Event.data["day"].as_string() == day,
        )
        .limit(1)
    )
    return told is not None


# A value, or a parameter of a statement read as rows, whose value comes with each run (the
# feed's page, built once for each kind of viewer).
Value = str | BindParameter[str]


def renters(marketplace_id: Value) -> ColumnElement[bool]:
    """Events of every renter of a marketplace, and the notices addressed to it."""
    return Event.marketplace_id == marketplace_id


def renter(marketplace_id: Value, principal: Value) -> ColumnElement[bool]:
    """Events of one renter, named by its marketplace and principal as every event addressed
    to a renter carries them (ix_events_marketplace_id_principal_seq)."""
    return (Event.marketplace_id == marketplace_id) & (Event.principal == principal)


def bots_of(owner_user_id: Value | None, types: Collection[str]) -> ColumnElement[bool]:
    """Events of these types about the bots a developer owns, and the developer's own notices
    (a webhook of theirs disabled)."""
    owned = select(Bot.id).where(Bot.owner_user_id == owner_user_id)
    return (Event.bot_id.in_(owned) & Event.type.in_(_constants(types))) | (
        Event.type.in_(_constants(OWNER_NOTICES)) & (Event.user_id == owner_user_id)
    )


def _constants(values: Collection[str]) -> list[ColumnElement[str]]:
    # One parameter each, not the list SQLAlchemy expands when the statement runs: `Rows`
    # compiles a statement once and passes its parameters as they are.
    return [literal(value) for value in sorted(values)]


async def page(
    session: AsyncSession,
    visible: ColumnElement[bool] | None,
    after_seq: int,
    up_to_seq: int | None,
    types: Collection[str] | None,
    limit: int,
) -> Sequence[Event]:
    """Sequenced events after `after_seq` (and up to `up_to_seq`, when given) that `visible`
    lets through, in `seq` order."""
    query = (
        select(Event)
        .where(matching(visible, after_seq, up_to_seq, types))
        .order_by(Event.seq)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


# The envelope's columns (EventOut's fields are named as they are), and `seq` for the cursor.
_PAGE_COLUMNS = [
    column
    for column in Event.__table__.c
    if column.key in EventOut.model_fields or column.key == "seq"
]


def page_view(visible: ColumnElement[bool] | None, types: int | None) -> Rows:
    """The feed's position and its page in one statement, read as rows (app/core/reads.py):
    one row of `head` and `behind` (the position, its event columns None), and the events in
    (:after_seq, head] that `visible` lets through, of the types :type_0 .. :type_<types - 1>
    when `types` is given, :limit at most, in `seq` order (their `head` and `behind` None).

    One statement sees one view of what is committed: the sequencer numbers events and moves
    the head in one transaction, so every event up to the head it reads is there for the page
    too. The page is read in `seq` order on the viewer's index and stops at :limit. `visible`
    is over parameters, whose values each run passes (a statement is built once for each kind
    of viewer and number of types)."""
    wanted: list[BindParameter[str]] | None = None
    if types is not None:
        wanted = [bindparam(f"type_{n}") for n in range(types)]
    events = (
        select(*_PAGE_COLUMNS)
        .where(matching(visible, bindparam("after_seq"), _HEAD, wanted))
        .order_by(Event.seq)
        .limit(bindparam("limit"))
        .subquery("page")
    )
    nothing = null()
    rows = union_all(
        select(
            type_coerce(nothing, BigInteger).label("head"),
            type_coerce(nothing, Boolean).label("behind"),
            *events.c,
        ),
        select(
            _HEAD.label("head"),
            _ANY_UNSEQUENCED.label("behind"),
            *(type_coerce(nothing, column.type).label(column.key) for column in _PAGE_COLUMNS),
        ),
    ).subquery("feed")
    return Rows(select(*rows.c))


def matching(
    visible: ColumnElement[bool] | None,
    after_seq: int | BindParameter[int],
    up_to_seq: int | ColumnElement[int] | None,
    types: Collection[Value] | None,
) -> ColumnElement[bool]:
    """Sequenced events in (`after_seq`, `up_to_seq`] that `visible` and `types` let through."""
    criteria = [Event.seq > after_seq]
    if up_to_seq is not None:
        criteria.append(Event.seq <= up_to_seq)
    if visible is not None:
        criteria.append(visible)
    if types is not None:
        criteria.append(Event.type.in_(types))
    return and_(*criteria)


async def addressed_after(
    session: AsyncSession, after_seq: int, limit: int
) -> list[tuple[Event, str | None]]:
    """Sequenced events after `after_seq` in `seq` order, each with its bot's owner (None
    where the event has none): with the event's own marketplace and principal, all the live
    hub needs to tell who may see it, in one read."""
    rows = (
        await session.execute(
            select(Event, Bot.owner_user_id)
            .outerjoin(Bot, Bot.id == Event.bot_id)
            .where(Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        )
    ).all()
    return [(event, bot_owner) for event, bot_owner in rows]


async def delete_of_user(session: AsyncSession, user_id: str) -> None:
    """The user's events in the table. Events recorded in this transaction are written at its
    commit, after this DELETE: a caller that recorded some writes them first
    (app/events/service.py, `write_recorded`)."""
    await session.execute(delete(Event).where(Event.user_id == user_id))


async def delete_older_than(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to `limit` events that occurred before `before`; returns how many went.

    Ids first, then a DELETE by id: SQLite has no DELETE ... LIMIT."""
    ids = (
        await session.scalars(
            select(Event.id)
            .where(Event.occurred_at < before)
            .order_by(Event.occurred_at)
            .limit(limit)
        )
    ).all()
    if not ids:
        return 0
    result = await session.execute(delete(Event).where(Event.id.in_(ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def use_ticket(session: AsyncSession, digest: str, now: datetime) -> bool:
    """Mark the ticket used, if it is unused and unexpired: one conditional UPDATE, so of two
    connections racing with one ticket exactly one wins."""
    result = await session.execute(
        update(StreamTicket)
        .where(
            StreamTicket.token_digest == digest,
            StreamTicket.used_at.is_(None),
            StreamTicket.expires_at > now,
        )
        .values(used_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def ticket_holder(session: AsyncSession, digest: str) -> tuple[str, str, str] | None:
    """The issuing key, the principal and the key's marketplace of a ticket, while that key
    is not revoked."""
    row = (
        await session.execute(
            select(StreamTicket.api_key_id, StreamTicket.principal, ApiKey.marketplace_id)
            .join(ApiKey, ApiKey.id == StreamTicket.api_key_id)
            .where(StreamTicket.token_digest == digest, ApiKey.revoked_at.is_(None))
        )
    ).one_or_none()
    if row is None:
        return None
    assert row.marketplace_id is not None, "only a marketplace key is issued tickets"
    return row.api_key_id, row.principal, row.marketplace_id


async def delete_expired_tickets(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(delete(StreamTicket).where(StreamTicket.expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def seq_of(session: AsyncSession, event_id: str) -> int | None:
    """The feed position of a sequenced event; None when there is none by the id (never
    numbered, or purged or erased since)."""
    return await session.scalar(
        select(Event.seq).where(Event.id == event_id, Event.seq.is_not(None))
    )
