"""An event exists if and only if the transaction that recorded it committed; its data is
stored in one JSON spelling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import session_scope
from app.events.service import json_safe, record
from app.events.types import EventType
from app.models import Event


@pytest.fixture(autouse=True)
async def no_events(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with session_scope(sessionmaker) as session:
        await session.execute(delete(Event))


async def test_an_event_commits_with_its_change(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with session_scope(sessionmaker) as session:
        event = record(session, EventType.decision_made, data={"action": "buy"}, bot_id="b" * 32)

    async with sessionmaker() as session:
        stored = await session.get(Event, event.id)
    assert stored is not None
    assert (stored.type, stored.bot_id, stored.data, stored.seq) == (
        "decision.made",
        "b" * 32,
        {"action": "buy"},
        None,
    )


async def test_an_event_rolls_back_with_its_change(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(RuntimeError):
        async with session_scope(sessionmaker) as session:
            record(session, EventType.trade_filled, data={"side": "BUY"})
            await session.flush()  # written, then undone with the transaction
            raise RuntimeError("the change failed")

    async with sessionmaker() as session:
        assert (await session.scalars(select(Event.id))).all() == []


def test_data_has_one_json_spelling() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=timezone(timedelta(hours=2)))
    assert json_safe(
        {"z": Decimal("100.50"), "a": [Decimal("1E+2"), at], "kind": EventType.trade_filled}
    ) == {"a": ["100", "2026-01-02T01:04:05.000600Z"], "kind": "trade.filled", "z": "100.5"}
    for bad in (Decimal("NaN"), float("inf"), datetime(2026, 1, 1), object()):
        with pytest.raises(TypeError):
            json_safe({"value": bad})
    assert list(json_safe({"b": 1, "a": 2})) == ["a", "b"]
    assert json_safe(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00Z"
