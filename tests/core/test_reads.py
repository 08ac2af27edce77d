"""`Rows` (app/core/reads.py): a SELECT run through the driver gives the values a session
would, takes the statement's own literals, and refuses what it cannot pass through."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import JSON, Column, MetaData, Numeric, String, Table, bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import UTCDateTime, create_engine
from app.core.reads import Rows

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
    reader = create_engine(database_url, autocommit=True)
    try:
        yield reader
    finally:
        await reader.dispose()
        async with writer.begin() as connection:
            await connection.run_sync(_METADATA.drop_all)
        await writer.dispose()


async def _through_core(engine: AsyncEngine, statement: Any, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        return [dict(row) for row in (await connection.execute(statement, params)).mappings()]


async def test_rows_carry_the_values_and_types_a_session_reads(engine: AsyncEngine) -> None:
    statement = (
        select(_PROBE)
        .where(_PROBE.c.id > bindparam("after_id"), _PROBE.c.note == "kept")
        .order_by(_PROBE.c.id)
        .limit(bindparam("limit"))
    )
    rows = await Rows(statement).all(engine, after_id="", limit=10)
    assert rows == await _through_core(engine, statement, after_id="", limit=10)
    assert [row["id"] for row in rows] == ["a", "c"]  # the literal "kept" was bound too
    first = rows[0]
    assert first == _ROWS[0]
    assert type(first["amount"]) is Decimal and first["at"].tzinfo is UTC


async def test_one_or_none(engine: AsyncEngine) -> None:
    one = Rows(select(_PROBE.c.id, _PROBE.c.amount).where(_PROBE.c.id == bindparam("id")))
    assert await one.one_or_none(engine, id="b") == {"id": "b", "amount": Decimal("0.5")}
    assert await one.one_or_none(engine, id="z") is None
    with pytest.raises(LookupError):
        await Rows(select(_PROBE.c.id)).one_or_none(engine)


async def test_a_parameter_that_needs_converting_is_refused(engine: AsyncEngine) -> None:
    # UTCDateTime converts what it binds (to naive UTC): the driver would get it unconverted.
    since = Rows(select(_PROBE.c.id).where(_PROBE.c.at >= bindparam("since", type_=UTCDateTime)))
    with pytest.raises(TypeError, match="'since' needs converting"):
        await since.all(engine, since=datetime(2026, 1, 1, tzinfo=UTC))


async def test_a_failed_statement_is_sqlalchemy_s_error_without_its_values(
    engine: AsyncEngine,
) -> None:
    secret = "bmk_not-for-the-logs"
    missing = Table("reads_missing", MetaData(), Column("id", String(32)))
    with pytest.raises(DBAPIError) as failed:
        await Rows(select(missing).where(missing.c.id == bindparam("id"))).all(engine, id=secret)
    assert "reads_missing" in str(failed.value) and secret not in str(failed.value)
    # The connection went back closed, not into the pool half used: the next read works.
    assert await Rows(select(_PROBE.c.id).where(_PROBE.c.id == "a")).all(engine) == [{"id": "a"}]
