"""The feed's cursor under concurrent writers: an event whose transaction commits after a later
one's is numbered after it, so a reader paging with the cursor meanwhile sees every committed
event exactly once, in order, and never a rolled-back one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.core.db import create_engine, session_scope
from app.core.reads import create_read_sessionmaker
from app.core.settings import Settings
from app.events import feed
from app.events.service import record
from app.events.types import EventType
from app.models import Event, EventSequence

ADMIN = feed.Viewer(Scope.admin)


@pytest.fixture
async def reads(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    # Reads as the API makes them: each statement on its own, outside a transaction.
    engine = create_engine(settings.database_url, pool=False, autocommit=True)
    yield create_read_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(autouse=True)
async def no_events(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessionmaker) as session:
        await session.execute(delete(Event))
        await session.execute(delete(EventSequence))


class Reader:
    """A feed client: keeps its cursor, remembers every event id it was given."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        reads: async_sessionmaker[AsyncSession],
    ) -> None:
        self.sessionmaker, self.reads = sessionmaker, reads
        self.cursor: str | None = None
        self.seen: list[str] = []

    async def poll(self, limit: int = 7) -> list[str]:
        after_seq = feed.decode_seq(self.cursor) if self.cursor else 0
        async with self.reads() as session:
            await feed.sequence_if_behind(self.sessionmaker, session)
            page = await feed.page(session, ADMIN, after_seq, None, limit)
        self.cursor = page.next_cursor
        ids = [item.id.removeprefix("evt_") for item in page.items]
        self.seen += ids
        return ids


async def test_an_event_committed_late_is_read_after_the_cursor(
    sessionmaker: async_sessionmaker[AsyncSession],
    reads: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    reader = Reader(sessionmaker, reads)
    async with sessionmaker() as slow:
        early = record(slow, EventType.trade_filled, data={"n": 1})
        if not settings.database_url.startswith("sqlite"):
            # Inserted, uncommitted (SQLite would hold its one write lock: B could not commit).
            await slow.flush()
        async with session_scope(sessionmaker) as fast:
            late = record(fast, EventType.trade_filled, data={"n": 2})
        assert early.occurred_at <= late.occurred_at  # a reader by insertion would skip it

        assert await reader.poll() == [late.id]
        await slow.commit()
    assert await reader.poll() == [early.id]
    assert await reader.poll() == []
    assert reader.seen == [late.id, early.id]


async def test_concurrent_writers_never_make_a_reader_skip(
    sessionmaker: async_sessionmaker[AsyncSession],
    reads: async_sessionmaker[AsyncSession],
) -> None:
    committed: list[str] = []
    rolled_back: list[str] = []
    writing = True
    rng = random.Random(21)

    async def writer(number: int) -> None:
        for transaction in range(8):
            pause = rng.random() / 50
            try:
                async with session_scope(sessionmaker) as session:
                    ids = [
                        record(session, EventType.decision_made, data={"w": number, "n": n}).id
                        for n in range(rng.randint(1, 3))
                    ]
                    await session.flush()
                    # Held open a while: others that inserted later commit first.
                    await asyncio.sleep(pause)
                    if transaction % 4 == 3:
                        raise LookupError("this change fails")
            except LookupError:
                rolled_back.extend(ids)
            else:
                committed.extend(ids)

    reader = Reader(sessionmaker, reads)

    async def read() -> None:
        while writing:
            await reader.poll()
            await asyncio.sleep(0.003)

    polling = asyncio.create_task(read())
    await asyncio.gather(*(writer(number) for number in range(5)))
    writing = False
    await polling
    while await reader.poll():
        pass

    assert len(reader.seen) == len(set(reader.seen)), "an event was read twice"
    assert sorted(reader.seen) == sorted(committed), "an event was skipped"
    assert not set(rolled_back) & set(reader.seen)
    async with sessionmaker() as session:
        seqs = (await session.scalars(select(Event.seq).order_by(Event.seq))).all()
    assert seqs == list(range(1, len(committed) + 1))


async def test_the_counter_survives_losing_its_row(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Made again above every seq given, never reusing one: a cursor must not go back."""
    for n in range(3):
        async with session_scope(sessionmaker) as session:
            record(session, EventType.decision_made, data={"n": n})
        assert await feed.sequence(sessionmaker) == 1
        if n == 1:
            async with session_scope(sessionmaker) as session:
                await session.execute(delete(EventSequence))
    async with sessionmaker() as session:
        assert (await session.scalars(select(Event.seq).order_by(Event.seq))).all() == [1, 2, 3]


async def test_one_run_numbers_a_backlog_larger_than_its_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A tick's burst is numbered by one call, batch after batch, in the order it happened."""
    async with session_scope(sessionmaker) as session:
        written = [record(session, EventType.decision_made, data={"n": n}) for n in range(2500)]
    assert await feed.sequence(sessionmaker) == 2500
    async with sessionmaker() as session:
        rows = (await session.execute(select(Event.id, Event.seq).order_by(Event.seq))).all()
    in_order = sorted(written, key=lambda event: (event.occurred_at, event.id))
    assert [event_id for event_id, _ in rows] == [event.id for event in in_order]
    assert [seq for _, seq in rows] == list(range(1, 2501))
