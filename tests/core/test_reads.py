"""`Rows` and `RowReader` (app/core/reads.py): a SELECT run through the driver gives the values
a session would, takes the statement's own literals, refuses what it cannot pass through, and
survives a connection killed under it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import JSON, Column, MetaData, Numeric, String, Table, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import UTCDateTime, create_engine
from app.core.reads import RowReader, Rows

_METADATA = MetaData()
_PROBE = Table(
    "reads_probe",
    _METADATA,
    Column("id", String(32), primary_key=True),
    Column("amount", Numeric(36, 18)),
    Column("at", UTCDateTime),
    Column("doc", JSON),
    Column("note", String(20), nullable=True),
)
_ROWS = [
    {
        "id": "a",
        "amount": Decimal("12345.125"),  # exact in SQLite too, which stores a float
        "at": datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC),
        "doc": {"stop_loss_pct": "5", "levels": [1, 2]},
        "note": "kept",
    },
    {"id": "b", "amount": Decimal("0.5"), "at": None, "doc": None, "note": None},
    {"id": "c", "amount": Decimal("7"), "at": None, "doc": [], "note": "kept"},
]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    writer = create_engine(database_url, pool=False)
    async with writer.begin() as connection:
        await connection.run_sync(_METADATA.create_all)
        await connection.execute(_PROBE.insert(), _ROWS)
    engine = create_engine(database_url, autocommit=True)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with writer.begin() as connection:
            await connection.run_sync(_METADATA.drop_all)
        await writer.dispose()


@pytest.fixture
async def reader(engine: AsyncEngine) -> AsyncIterator[RowReader]:
    reader = RowReader(engine)
    try:
        yield reader
    finally:
        await reader.close()


async def _through_core(engine: AsyncEngine, statement: Any, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        return [dict(row) for row in (await connection.execute(statement, params)).mappings()]


async def test_rows_carry_the_values_and_types_a_session_reads(
    engine: AsyncEngine, reader: RowReader
) -> None:
    statement = (
        select(_PROBE)
        .where(_PROBE.c.id > bindparam("after_id"), _PROBE.c.note == "kept")
        .order_by(_PROBE.c.id)
        .limit(bindparam("limit"))
    )
    rows = await Rows(statement).all(reader, after_id="", limit=10)
    assert rows == await _through_core(engine, statement, after_id="", limit=10)
    assert [row["id"] for row in rows] == ["a", "c"]  # the literal "kept" was bound too
    first = rows[0]
    assert first == _ROWS[0]
    assert type(first["amount"]) is Decimal and first["at"].tzinfo is UTC


async def test_one_or_none(reader: RowReader) -> None:
    one = Rows(select(_PROBE.c.id, _PROBE.c.amount).where(_PROBE.c.id == bindparam("id")))
    assert await one.one_or_none(reader, id="b") == {"id": "b", "amount": Decimal("0.5")}
    assert await one.one_or_none(reader, id="z") is None
    with pytest.raises(LookupError):
        await Rows(select(_PROBE.c.id)).one_or_none(reader)


async def test_a_parameter_that_needs_converting_is_refused(reader: RowReader) -> None:
    # UTCDateTime converts what it binds (to naive UTC): the driver would get it unconverted.
    since = Rows(select(_PROBE.c.id).where(_PROBE.c.at >= bindparam("since", type_=UTCDateTime)))
    with pytest.raises(TypeError, match="'since' needs converting"):
        await since.all(reader, since=datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_failed_statement_is_sqlalchemy_s_error_without_its_values(
    reader: RowReader,
) -> None:
    secret = "bmk_not-for-the-logs"
    missing = Table("reads_missing", MetaData(), Column("id", String(32)))
    with pytest.raises(DBAPIError) as failed:
        await Rows(select(missing).where(missing.c.id == bindparam("id"))).all(reader, id=secret)
    assert "reads_missing" in str(failed.value) and secret not in str(failed.value)
    # The connection went back closed, not into the pool half used: the next read works.
    assert await Rows(select(_PROBE.c.id).where(_PROBE.c.id == "a")).all(reader) == [{"id": "a"}]


async def test_a_statement_whose_connection_is_killed_runs_again_on_a_new_one(
    database_url: str, engine: AsyncEngine, reader: RowReader
) -> None:
    """Killed mid-statement, the connection gives no sign of it until the statement fails:
    the read is repeated on a new connection, and the caller sees only its rows."""
    if not database_url.startswith("mysql"):
        pytest.skip("KILL is MariaDB's")
    connection_id = Rows(select(func.connection_id().label("id")))
    (first,) = await connection_id.all(reader)  # the pool's one connection, lent in turn
    slow = Rows(select(func.connection_id().label("id"), func.sleep(1).label("slept")))
    reading = asyncio.create_task(slow.all(reader))
    await asyncio.sleep(0.3)
    async with engine.connect() as killer:
        await killer.execute(text(f"KILL {first['id']}"))
    (read,) = await asyncio.wait_for(reading, timeout=10)
    assert read["id"] != first["id"]
