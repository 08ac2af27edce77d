"""The feed's cursor under concurrent writers: an event whose transaction commits after a later
one's is numbered after it, so a reader paging with the cursor meanwhile sees every committed
event exactly once, in order, and never a rolled-back one."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.core.db import session_scope
from app.core.reads import RowReader
from app.core.settings import Settings
from app.events import feed
from app.events.service import record, write_recorded
from app.events.types import EventType
from app.models import Event, EventSequence
from app.runtime import Runtime
from tests.helpers import headers

ADMIN = feed.Viewer(Scope.admin)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every poll read anew: the feed's replica window (feed.page_cache) would answer most of
    the racing polls from memory, and the races are in the reads."""
    return settings.model_copy(update={"feed_replica_window_s": 0.0})


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
        rows: RowReader,
    ) -> None:
        self.sessionmaker, self.rows = sessionmaker, rows
        self.cursor: str | None = None
        self.seen: list[str] = []

    async def poll(self, limit: int = 7) -> list[str]:
        after_seq = feed.decode_seq(self.cursor) if self.cursor else 0
        page = await feed.page(self.rows, self.sessionmaker, ADMIN, after_seq, None, limit)
        self.cursor = page.next_cursor
        ids = [item.id.removeprefix("evt_") for item in page.items]
        self.seen += ids
        return ids


async def test_an_event_committed_late_is_read_after_the_cursor(
    sessionmaker: async_sessionmaker[AsyncSession],
    rows: RowReader,
    settings: Settings,
) -> None:
    reader = Reader(sessionmaker, rows)
    async with sessionmaker() as slow:
        early = record(slow, EventType.trade_filled, data={"n": 1})
        if not settings.database_url.startswith("sqlite"):
            # Inserted, uncommitted (SQLite would hold its one write lock: B could not commit).
            await write_recorded(slow)
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
    rows: RowReader,
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
                    await write_recorded(session)
                    # Held open a while: others that inserted later commit first.
                    await asyncio.sleep(pause)
                    if transaction % 4 == 3:
                        raise LookupError("this change fails")
            except LookupError:
                rolled_back.extend(ids)
            else:
                committed.extend(ids)

    reader = Reader(sessionmaker, rows)

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


class ApiReader:
    """A feed client of the API: keeps its cursor, remembers every event id it was given."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client, self.key = client, key
        self.cursor: str | None = None
        self.seen: list[str] = []

    async def poll(self, limit: int = 4) -> list[str]:
        params: dict[str, object] = {"limit": limit}
        if self.cursor is not None:
            params["after"] = self.cursor
        response = await self.client.get("/api/v1/events", params=params, headers=headers(self.key))
        assert response.status_code == 200, response.text
        self.cursor = response.json()["next_cursor"]
        ids = [item["id"].removeprefix("evt_") for item in response.json()["items"]]
        self.seen += ids
        return ids

    async def read_up(self, limit: int = 4) -> None:
        """Reads on until a short page: up to the head."""
        while len(await self.poll(limit)) == limit:
            pass


async def test_pollers_of_the_api_racing_the_live_hub_miss_and_repeat_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    admin_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Writers commit through the API process's own sessions, so its live hub rings and numbers
    their events as they commit, while another sequencer (beat's, another process's hub) runs
    too and readers poll the feed: a poll right after a commit returns its events (with the
    replica window off: with it, at most the window later), and every
    reader gets every committed event once, in `seq` order. A feed that reads its page before
    the head it hands out returns an empty page with a cursor past events being numbered."""
    runtime: Runtime = app.state.runtime
    committed: list[str] = []
    writing = True
    rng = random.Random(2121)

    async def writer(number: int) -> None:
        mine = ApiReader(client, admin_key)
        for transaction in range(6):
            async with session_scope(runtime.sessionmaker) as session:
                ids = [
                    record(session, EventType.decision_made, data={"w": number, "n": n}).id
                    for n in range(rng.randint(1, 3))
                ]
            committed.extend(ids)
            await mine.read_up()
            assert set(ids) <= set(mine.seen), f"writer {number}: commit {transaction} not read"
            await asyncio.sleep(rng.random() / 100)

    async def other_sequencer() -> None:
        while writing:
            await feed.sequence(sessionmaker)
            await asyncio.sleep(0.001)

    readers = [ApiReader(client, admin_key) for _ in range(3)]

    async def read(reader: ApiReader) -> None:
        while writing:
            await reader.poll()
            await asyncio.sleep(0.001)

    racing = [asyncio.create_task(other_sequencer())]
    racing += [asyncio.create_task(read(reader)) for reader in readers]
    await asyncio.gather(*(writer(number) for number in range(5)))
    writing = False
    await asyncio.gather(*racing)
    async with sessionmaker() as session:
        in_seq_order = (await session.scalars(select(Event.id).order_by(Event.seq))).all()
    assert sorted(in_seq_order) == sorted(committed)
    for reader in readers:
        await reader.read_up()
        assert reader.seen == in_seq_order


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
