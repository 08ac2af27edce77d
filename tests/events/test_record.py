"""An event exists if and only if the transaction that recorded it committed; its data is
stored in one JSON spelling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import delete, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import new_id, session_scope
from app.events.service import (
    json_safe,
    record,
    record_for_renter,
    record_for_subscription,
    write_recorded,
)
from app.events.types import EventType
from app.models import Event, Subscription, User
from tests.trading.conftest import make_bot, subscribe


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
            await write_recorded(session)  # written, then undone with the transaction
            raise RuntimeError("the change failed")

    async with sessionmaker() as session:
        assert (await session.scalars(select(Event.id))).all() == []


async def test_a_rollback_before_anything_was_written_drops_what_was_recorded(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The session's next transaction starts with nothing recorded, even when the rolled-back
    one never reached the database."""
    async with sessionmaker() as session:
        record(session, EventType.trade_filled, data={"n": 1})
        await session.rollback()
        kept = record(session, EventType.trade_filled, data={"n": 2})
        await session.commit()

    async with sessionmaker() as session:
        assert (await session.scalars(select(Event.id))).all() == [kept.id]


async def test_an_event_of_a_renter_made_in_its_transaction_is_written_after_the_renter(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Recorded before the renter's row was flushed: the commit writes the renter first (the
    event's foreign key needs it)."""
    async with session_scope(sessionmaker) as session:
        renter = User(id=new_id(), kind="renter", principal="aaaaa-aa")
        session.add(renter)
        event = record_for_renter(session, EventType.subscription_created, renter, {})

    async with sessionmaker() as session:
        stored = await session.get(Event, event.id)
    assert stored is not None and stored.user_id == renter.id


async def test_a_subscription_event_after_a_rollback_reads_its_renter_again(
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The renter the session held was expired by the rollback: read again, not used as is."""
    sub_id = await subscribe(client, marketplace_key, await make_bot(client, developer_key))
    async with sessionmaker() as session:
        sub = await session.get(Subscription, sub_id)
        assert sub is not None
        renter = await session.get(User, sub.user_id)
        await session.rollback()
        assert renter is not None and inspect(renter).expired
        sub = await session.get(Subscription, sub_id)
        assert sub is not None
        event = await record_for_subscription(session, EventType.subscription_paused, sub, {})
        await session.commit()

    async with sessionmaker() as session:
        stored = await session.get(Event, event.id)
    assert stored is not None
    assert (stored.user_id, stored.subscription_id) == (renter.id, sub_id)
    assert stored.principal is not None


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
