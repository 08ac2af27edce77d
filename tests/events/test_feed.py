"""GET /api/v1/events: each key's share, oldest first, a cursor that keeps its place, the same
bytes for the same request, 422 for what it did not issue; erasure and retention."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.core.db import session_scope, utcnow
from app.core.settings import Settings
from app.erasure import service as erasure
from app.events import feed
from app.events.service import record, record_for_renter
from app.events.types import EventType
from app.models import Event, User
from app.users.renter import Renter
from tests.api.test_contract import create_bot
from tests.conftest import make_key
from tests.events.seeding import default_renter
from tests.helpers import headers, new_principal
from workers.celery_app import celery_app
from workers.schedule import beat_schedule

URL = "/api/v1/events"


class Seeded:
    def __init__(self, bot_id: str, other_bot_id: str, renter: str, other_renter: str) -> None:
        self.bot_id, self.other_bot_id = bot_id, other_bot_id
        self.renter, self.other_renter = renter, other_renter
        self.types: list[str] = []


@pytest.fixture
async def seeded(
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Seeded:
    """Two bots of two developers, two renters of the marketplace key's marketplace, and each
    kind of reader's events."""
    other_developer = await make_key(settings, Scope.developer, "other developer")
    bot = (await create_bot(client, developer_key))["id"]
    other_bot = (await create_bot(client, other_developer))["id"]
    seeded = Seeded(bot, other_bot, new_principal(), new_principal())
    async with session_scope(sessionmaker) as session:
        renter = await default_renter(session, seeded.renter)
        other = await default_renter(session, seeded.other_renter)

        def bot_event(event_type: EventType, bot_id: str) -> None:
            record(session, event_type, data={"symbol": "BTCUSDT"}, bot_id=bot_id)
            seeded.types.append(event_type.value)

        def renter_event(event_type: EventType, user: User, bot_id: str) -> None:
            record_for_renter(
                session,
                event_type,
                user,
                {"symbol": "BTCUSDT"},
                subscription_id=f"sub-{user.principal}"[:32],
                bot_id=bot_id,
            )
            seeded.types.append(event_type.value)

        bot_event(EventType.decision_made, bot)
        renter_event(EventType.trade_filled, renter, bot)
        bot_event(EventType.decision_made, other_bot)
        renter_event(EventType.trade_filled, other, other_bot)
        renter_event(EventType.risk_paused, renter, bot)
        bot_event(EventType.backtest_finished, bot)
    return seeded


async def read(
    client: httpx.AsyncClient, key: str, principal: str | None = None, **params: object
) -> dict:
    response = await client.get(URL, params=params, headers=headers(key, principal))
    assert response.status_code == 200, response.text
    return response.json()


def seen(page: dict) -> list[tuple[str, str | None, str | None]]:
    return [(item["type"], item["principal"], item["bot_id"]) for item in page["items"]]


async def test_each_key_reads_its_share(
    client: httpx.AsyncClient,
    seeded: Seeded,
    admin_key: str,
    developer_key: str,
    marketplace_key: str,
) -> None:
    s = seeded
    everything = await read(client, admin_key)
    assert [item["type"] for item in everything["items"]] == s.types
    assert all(item["id"].startswith("evt_") for item in everything["items"])

    assert seen(await read(client, marketplace_key)) == [
        ("trade.filled", s.renter, s.bot_id),
        ("trade.filled", s.other_renter, s.other_bot_id),
        ("risk.paused", s.renter, s.bot_id),
    ]
    assert seen(await read(client, marketplace_key, s.renter)) == [
        ("trade.filled", s.renter, s.bot_id),
        ("risk.paused", s.renter, s.bot_id),
    ]
    assert (await read(client, marketplace_key, new_principal()))["items"] == []

    # A developer: its own bots' decisions and backtests, never whose subscription it was.
    developer = await read(client, developer_key, s.renter)
    assert seen(developer) == [
        ("decision.made", None, s.bot_id),
        ("backtest.finished", None, s.bot_id),
    ]
    assert {item["subscription_id"] for item in developer["items"]} == {None}
    assert s.renter not in str(developer) and s.other_renter not in str(developer)


async def test_the_cursor_pages_and_keeps_its_place(
    client: httpx.AsyncClient,
    seeded: Seeded,
    admin_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    types: list[str] = []
    page = await read(client, admin_key, limit=4)
    while page["items"]:
        types += [item["type"] for item in page["items"]]
        cursor = page["next_cursor"]
        page = await read(client, admin_key, after=cursor, limit=4)
    assert types == seeded.types
    # An empty page hands back the place asked from, and reading on from it finds what is new.
    assert page["next_cursor"] == cursor
    async with session_scope(sessionmaker) as session:
        record(session, EventType.decision_made, data={}, bot_id=seeded.bot_id)
    page = await read(client, admin_key, after=cursor)
    assert [item["type"] for item in page["items"]] == ["decision.made"]


async def test_a_short_filtered_page_moves_the_cursor_to_the_newest_event(
    client: httpx.AsyncClient,
    seeded: Seeded,
    admin_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The next poll starts at the newest event, not again where the filter found nothing."""
    head = (await read(client, admin_key))["next_cursor"]
    nothing = await read(client, admin_key, types="credentials.invalid")
    assert nothing["items"] == [] and nothing["next_cursor"] == head
    async with session_scope(sessionmaker) as session:
        record(session, EventType.decision_made, data={}, bot_id=seeded.bot_id)
        record(session, EventType.credentials_invalid, data={}, bot_id=seeded.bot_id)
    later = await read(
        client, admin_key, after=head, types="credentials.invalid,decision.made", limit=10
    )
    assert [item["type"] for item in later["items"]] == ["decision.made", "credentials.invalid"]


async def test_with_no_events_at_all_the_cursor_reads_from_the_beginning(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    empty = await read(client, admin_key, types="credentials.invalid")
    assert empty["items"] == [] and empty["next_cursor"] == feed.encode_seq(0)


async def test_filtered_by_type_and_byte_identical(
    client: httpx.AsyncClient, seeded: Seeded, marketplace_key: str
) -> None:
    params = {"types": "risk.paused,decision.made", "limit": 10}
    first = await client.get(URL, params=params, headers=headers(marketplace_key))
    again = await client.get(URL, params=params, headers=headers(marketplace_key))
    assert first.status_code == 200 and first.content == again.content
    assert [item["type"] for item in first.json()["items"]] == ["risk.paused"]
    assert list(first.json()) == ["items", "next_cursor"]
    assert list(first.json()["items"][0]) == [
        "id",
        "type",
        "occurred_at",
        "principal",
        "subscription_id",
        "bot_id",
        "data",
    ]
    assert first.json()["items"][0]["occurred_at"].endswith("Z")


async def test_the_replicas_of_one_poll_get_the_same_bytes_while_events_are_numbered(
    client: httpx.AsyncClient,
    seeded: Seeded,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """A canister's poll arrives from each replica of its subnet: an event numbered between
    two of them must not make their answers differ. It is in the next page, after the cursor
    they all got, and a poll after the window finds it."""
    first = await client.get(URL, headers=headers(marketplace_key, seeded.renter))
    window_began = time.monotonic()
    async with session_scope(sessionmaker) as session:
        user = await session.scalar(select(User).where(User.principal == seeded.renter))
        assert user is not None
        record_for_renter(session, EventType.trade_filled, user, {"symbol": "ETHUSDT"})
    assert await feed.sequence(sessionmaker) == 1
    replica = await client.get(URL, headers=headers(marketplace_key, seeded.renter))
    assert time.monotonic() - window_began < settings.feed_replica_window_s, "too slow to tell"
    assert replica.status_code == 200 and replica.content == first.content
    # Another question (here, the page after the cursor they got) is read anew.
    after = await read(client, marketplace_key, seeded.renter, after=first.json()["next_cursor"])
    assert [item["data"] for item in after["items"]] == [{"symbol": "ETHUSDT"}]
    await asyncio.sleep(settings.feed_replica_window_s - (time.monotonic() - window_began))
    later = await read(client, marketplace_key, seeded.renter)
    assert [item["data"]["symbol"] for item in later["items"]][-1] == "ETHUSDT"


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"after": "w6nDqcOp"}, "query.after"),
        ({"after": "\u00e9"}, "query.after"),
        # 32 hex digits, as every cursor, but past the largest seq a database column holds.
        ({"after": feed.encode_seq(2**63)}, "query.after"),
        ({"after": feed.encode_seq(2**128 - 1)}, "query.after"),
        ({"types": "trade.filled,trade.exploded"}, "query.types"),
        ({"types": ""}, "query.types"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
    ],
)
async def test_what_it_did_not_issue_is_422(
    client: httpx.AsyncClient, admin_key: str, params: dict[str, object], loc: str
) -> None:
    response = await client.get(URL, params=params, headers=headers(admin_key))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert response.json()["error"]["details"][0]["loc"] == loc


async def test_a_renter_who_erases_their_data_takes_their_events(
    client: httpx.AsyncClient, seeded: Seeded, marketplace_key: str, admin_key: str
) -> None:
    # Read just before, so that each page after the erasure is one its replica window holds.
    assert (await read(client, marketplace_key, seeded.renter))["items"]
    assert seeded.renter in {item["principal"] for item in (await read(client, admin_key))["items"]}
    erased = await client.delete(
        "/api/v1/principals/me", headers=headers(marketplace_key, seeded.renter)
    )
    assert erased.status_code == 204, erased.text
    assert (await read(client, marketplace_key, seeded.renter))["items"] == []
    principals = {item["principal"] for item in (await read(client, admin_key))["items"]}
    assert principals == {None, seeded.other_renter}


async def test_an_event_recorded_before_the_erasure_in_its_transaction_goes_with_it(
    seeded: Seeded, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Recorded events wait for the commit to be written: the erasure writes them before its
    DELETE, or one recorded earlier in its transaction would outlive it."""
    async with session_scope(sessionmaker) as session:
        user = await session.scalar(select(User).where(User.principal == seeded.renter))
        assert user is not None
        record_for_renter(session, EventType.subscription_cancelled, user, {"reason": "erased"})
        await erasure.erase(session, Renter(user.id, user.marketplace_id, seeded.renter))
    async with sessionmaker() as session:
        left = await session.scalars(select(Event.type).where(Event.principal == seeded.renter))
        assert left.all() == []


async def test_purge_deletes_old_events_only(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    now = utcnow()
    retention = timedelta(days=30)
    async with session_scope(sessionmaker) as session:
        await session.execute(Event.__table__.delete())
        aged = {
            record(session, EventType.decision_made, data={"age": days}).id: days
            for days in (45, 31, 31, 29, 0)
        }
    async with session_scope(sessionmaker) as session:
        for event_id, days in aged.items():
            await session.execute(
                update(Event)
                .where(Event.id == event_id)
                .values(occurred_at=now - timedelta(days=days))
            )
    # Batches of two: the purge goes on until a batch comes back short.
    assert await feed.purge_older_than(sessionmaker, now, retention, batch=2) == 3
    async with sessionmaker() as session:
        ages = (await session.scalars(select(Event.data).order_by(Event.occurred_at))).all()
    assert ages == [{"age": 29}, {"age": 0}]


def test_beat_numbers_and_purges_events(settings: Settings) -> None:
    celery_app.loader.import_default_modules()
    schedule = beat_schedule(settings)
    assert schedule["sequence-events"]["schedule"] == settings.event_sequence_interval_s
    for entry in ("sequence-events", "purge-events"):
        assert schedule[entry]["task"] in celery_app.tasks
