"""The live stream on a real uvicorn: tickets (single use, expiring, bound to their key), a
renter's events only, subscribe and resume over the WebSocket with no gap and no duplicate at
the seam, Server-Sent Events with Last-Event-ID, a slow client dropped, and a hub that catches
up from the table when no doorbell rang."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.api_keys.schemas import Scope
from app.core.db import session_scope, utcnow
from app.core.settings import Settings
from app.events import tickets
from app.events.doorbell import Doorbell
from app.events.service import record
from app.events.types import EventType
from app.main import create_app
from app.models import ApiKey, StreamTicket
from tests.conftest import make_key, make_settings
from tests.events.seeding import write_renter_events
from tests.events.stream_client import (
    PATIENCE_S,
    events,
    frame,
    ids,
    served,
    socket,
    ticket,
)
from tests.helpers import new_principal

# Events a connection may hold unsent, where a test drops a slow client.
SMALL_QUEUE = 8


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path).model_copy(
        update={
            "stream_heartbeat_s": 0.3,
            # The table read that finds events nobody rang for, soon.
            "stream_safety_poll_s": 0.3,
        }
    )


@pytest.fixture
async def base(app: FastAPI) -> AsyncIterator[str]:
    async with served(app) as address:
        yield address


@pytest.fixture
def writes(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    """The API's own sessions: their commits ring its doorbell, as a worker's do."""
    return app.state.runtime.sessionmaker


@pytest.fixture
def renter() -> str:
    """A renter's principal; its row is made by its first event or ticket."""
    return new_principal()


@contextlib.asynccontextmanager
async def another_api(settings: Settings, **update: Any) -> AsyncIterator[tuple[FastAPI, str]]:
    """A second API on the app's database with some settings of its own, behind its own
    uvicorn: the app and its address."""
    other = create_app(settings.model_copy(update=update))
    async with other.router.lifespan_context(other), served(other) as address:
        yield other, address


async def refused(base: str, path: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of a WebSocket refused before the upgrade."""
    with pytest.raises(InvalidStatus) as refusal:
        async with socket(base, path, key):
            pass
    response = refusal.value.response
    return response.status_code, json.loads(response.body or b"{}")


async def test_a_ticket_streams_its_renters_events_once(
    base: str,
    marketplace_key: str,
    renter: str,
    writes: async_sessionmaker[AsyncSession],
) -> None:
    issued = await ticket(base, marketplace_key, renter)
    assert set(issued) == {"ticket", "expires_at", "url"}
    assert issued["url"].startswith("/api/v1/events/ws?ticket=")
    other = new_principal()
    async with socket(base, issued["url"]) as ws:
        await write_renter_events(writes, other)
        mine = await write_renter_events(writes, renter, 3)
        frames = await events(ws, 3)
    assert ids(frames) == mine
    assert {f["event"]["principal"] for f in frames} == {renter}
    assert list(frames[0]) == ["type", "cursor", "event"]
    assert list(frames[0]["event"]) == [
        "id", "type", "occurred_at", "principal", "subscription_id", "bot_id", "data",
    ]  # fmt: skip

    status, body = await refused(base, issued["url"])
    assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED", body


async def test_what_a_stream_does_not_open_on_is_refused_before_the_upgrade(
    base: str, settings: Settings, marketplace_key: str, admin_key: str, renter: str
) -> None:
    other_key = await make_key(settings, Scope.marketplace, "another marketplace")
    issued = await ticket(base, marketplace_key, renter)
    # Shown with another key than the one it was issued to: refused, and used up (whoever
    # showed it had it from elsewhere).
    assert (await refused(base, issued["url"], other_key))[0] == 401
    assert (await refused(base, issued["url"], marketplace_key))[0] == 401
    assert (await refused(base, "/api/v1/events/ws?ticket=made-up"))[0] == 401
    status, body = await refused(base, "/api/v1/events/ws")
    assert status == 401 and body["error"]["details"] == [], body
    # A marketplace key streams a renter's events through a ticket only.
    assert (await refused(base, "/api/v1/events/ws", marketplace_key))[0] == 403
    async with socket(base, (await ticket(base, marketplace_key, renter))["url"]):
        pass
    async with socket(base, "/api/v1/events/ws", admin_key):
        pass


async def test_an_expired_ticket_is_refused(
    app: FastAPI, settings: Settings, marketplace_key: str, renter: str
) -> None:
    # A second API on the app's database, whose tickets expire at once.
    async with another_api(settings, stream_ticket_ttl_s=0.05) as (_, address):
        issued = await ticket(address, marketplace_key, renter)
        await asyncio.sleep(0.1)
        status, body = await refused(address, issued["url"])
    assert status == 401 and "expired" in body["error"]["message"], body


async def test_subscribe_keeps_the_types_asked_for_and_a_bad_message_is_an_error_frame(
    base: str, admin_key: str, renter: str, writes: async_sessionmaker[AsyncSession]
) -> None:
    async with socket(base, "/api/v1/events/ws", admin_key) as ws:
        await ws.send(json.dumps({"type": "subscribe", "types": ["trade.exploded"]}))
        error = await frame(ws)
        assert error["type"] == "error" and error["error"]["code"] == "VALIDATION_ERROR"
        assert error["error"]["details"][0]["loc"].startswith("message.types")
        await ws.send(json.dumps({"type": "dance"}))
        assert (await frame(ws))["type"] == "error"
        await ws.send(b"\x00")
        assert (await frame(ws))["type"] == "error"
        # Still open, and obeying.
        await ws.send(json.dumps({"type": "subscribe", "types": ["risk.paused"]}))
        assert await frame(ws) == {"type": "subscribed", "types": ["risk.paused"]}
        await write_renter_events(writes, renter, 2)
        (wanted,) = await write_renter_events(writes, renter, 1, EventType.risk_paused)
        (only,) = await events(ws, 1)
        assert only["event"]["id"] == wanted and only["event"]["type"] == "risk.paused"


async def feed_after(base: str, key: str, cursor: str) -> list[str]:
    """The ids the feed holds after `cursor`, for an admin: the order a stream must keep."""
    found: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        while True:
            page = await http.get(
                "/api/v1/events",
                params={"after": cursor, "limit": 200},
                headers={"X-API-Key": key},
            )
            items = page.json()["items"]
            if not items:
                return found
            found += [item["id"] for item in items]
            cursor = page.json()["next_cursor"]


async def test_resume_replays_then_goes_live_without_gap_or_duplicate_under_writes(
    base: str, admin_key: str, renter: str, writes: async_sessionmaker[AsyncSession]
) -> None:
    async with socket(base, "/api/v1/events/ws", admin_key) as ws:
        await write_renter_events(writes, renter)
        (first,) = await events(ws, 1)
    await write_renter_events(writes, renter, 5)

    async def writer() -> None:
        for _ in range(15):
            await write_renter_events(writes, renter, 2)

    async with socket(base, "/api/v1/events/ws", admin_key) as ws:
        writing = asyncio.create_task(writer())
        await ws.send(json.dumps({"type": "resume", "after": first["cursor"]}))
        frames = await events(ws, 5 + 30)
        await writing
        # Nothing more than those: the next frame is the next event written.
        (last,) = await write_renter_events(writes, renter)
        (after,) = await events(ws, 1)
    expected = await feed_after(base, admin_key, first["cursor"])
    assert ids([*frames, after]) == expected and expected[-1] == last
    assert len(set(expected)) == 36


async def sse(
    base: str, key: str, count: int, last_event_id: str | None = None
) -> list[tuple[str, str]]:
    """The stream's first `count` messages: (id, data) of an event, ("comment", line) of a
    comment."""
    extra = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    received: list[tuple[str, str]] = []
    async with (
        httpx.AsyncClient(base_url=f"http://{base}", timeout=PATIENCE_S) as http,
        http.stream(
            "GET", "/api/v1/events/stream", headers={"X-API-Key": key, **extra}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                received.append(("comment", line))
            elif line:
                name, _, value = line.partition(": ")
                fields[name] = value
            elif fields:  # a blank line ends an event
                received.append((fields.pop("id"), fields.pop("data")))
            if len(received) == count:
                return received
    raise AssertionError(f"the stream ended after {received}")


async def test_server_sent_events_resume_from_last_event_id(
    base: str, admin_key: str, renter: str, writes: async_sessionmaker[AsyncSession]
) -> None:
    async with socket(base, "/api/v1/events/ws", admin_key) as ws:
        written = await write_renter_events(writes, renter, 4)
        await events(ws, 4)  # numbered and sent live: the replay below finds them
    received = await sse(base, admin_key, 3, last_event_id=written[0])
    assert [json.loads(data)["id"] for _, data in received] == written[1:]
    # `id:` is each event's id, as its envelope names it.
    assert [event_id for event_id, _ in received] == written[1:]
    # Idle, the stream speaks in comments.
    assert (await sse(base, admin_key, 1))[0] == ("comment", ": heartbeat")

    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        bad, gone = [
            await http.get(
                "/api/v1/events/stream", headers={"X-API-Key": admin_key, "Last-Event-ID": sent}
            )
            for sent in ("nope", f"evt_{'0' * 32}")
        ]
        unauthenticated = await http.get("/api/v1/events/stream")
    for refused in (bad, gone):
        assert refused.status_code == 422
        assert refused.json()["error"]["details"][0]["loc"] == "header.Last-Event-ID"
    assert unauthenticated.status_code == 401


async def test_a_client_too_far_behind_is_dropped_and_resumes_with_its_cursor(
    app: FastAPI, settings: Settings, marketplace_key: str, renter: str
) -> None:
    received: list[dict[str, Any]] = []
    async with another_api(settings, stream_queue_size=SMALL_QUEUE) as (small, base):
        writes = small.state.runtime.sessionmaker
        url = (await ticket(base, marketplace_key, renter))["url"]
        async with socket(base, url) as ws:
            (start,) = await write_renter_events(writes, renter)
            received += await events(ws, 1)
            # More at once than the connection may hold unsent.
            burst = await write_renter_events(writes, renter, SMALL_QUEUE * 3)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    received.append(await frame(ws))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert ids(received)[0] == start and len(received) < 1 + len(burst)

        resumed = (await ticket(base, marketplace_key, renter))["url"]
        async with socket(base, resumed) as ws:
            await ws.send(json.dumps({"type": "resume", "after": received[-1]["cursor"]}))
            rest = await events(ws, 1 + len(burst) - len(received))
    assert ids(received) + ids(rest) == [start, *burst]


async def test_revoking_a_key_ends_the_streams_it_opened(
    base: str, settings: Settings, admin_key: str, renter: str
) -> None:
    """A leaked key's thief streamed on after the key was revoked. Its ticket's WebSocket is
    closed with 1008 and its Server-Sent Events end, within the key cache's few seconds."""
    leaked = await make_key(settings, Scope.marketplace, "leaked")
    developer = await make_key(settings, Scope.developer, "leaked developer")
    kept = await make_key(settings, Scope.marketplace, "kept")

    async def revoke(name: str) -> None:
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            listed = await http.get("/api/v1/api-keys", headers={"X-API-Key": admin_key})
            [key_id] = [i["id"] for i in listed.json()["items"] if i["name"] == name]
            gone = await http.delete(f"/api/v1/api-keys/{key_id}", headers={"X-API-Key": admin_key})
        assert gone.status_code == 204

    async def sse_ends(http: httpx.AsyncClient) -> None:
        async with http.stream(
            "GET", "/api/v1/events/stream", headers={"X-API-Key": developer}
        ) as response:
            assert response.status_code == 200
            async for _ in response.aiter_lines():
                pass  # heartbeats, until the server ends the stream

    async with (
        socket(base, (await ticket(base, leaked, renter))["url"]) as stolen,
        socket(base, (await ticket(base, kept, renter))["url"]) as other,
        httpx.AsyncClient(base_url=f"http://{base}", timeout=PATIENCE_S) as http,
    ):
        sse_stream = asyncio.create_task(sse_ends(http))
        await revoke("leaked")
        await revoke("leaked developer")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(stolen.recv(), PATIENCE_S)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        await asyncio.wait_for(sse_stream, PATIENCE_S)
        # The other key's stream goes on.
        await other.ping()
        assert other.close_code is None


async def test_events_nobody_rang_for_reach_the_stream_from_the_table(
    base: str,
    admin_key: str,
    renter: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A writer whose ring was lost (its sessions have no doorbell here): the hub's own read
    of the table finds its events."""
    async with socket(base, "/api/v1/events/ws", admin_key) as ws:
        written = await write_renter_events(sessionmaker, renter, 2)
        assert ids(await events(ws, 2)) == written


async def test_a_commit_that_recorded_events_rings_and_a_rollback_does_not(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # Without Redis the ring is this process's own: `rung` is what its hub waits on.
    doorbell = Doorbell(settings.model_copy(update={"redis_url": None}))
    doorbell.serve(sessionmaker)
    try:
        with contextlib.suppress(RuntimeError):
            async with session_scope(sessionmaker) as session:
                record(session, EventType.decision_made, data={})
                raise RuntimeError("the change fails")
        assert not doorbell.rung.is_set()
        async with session_scope(sessionmaker) as session:
            await session.execute(select(1))
        assert not doorbell.rung.is_set()
        async with session_scope(sessionmaker) as session:
            record(session, EventType.decision_made, data={})
        assert doorbell.rung.is_set()
    finally:
        doorbell.close()


async def test_the_purge_deletes_expired_tickets_only(
    app: FastAPI, marketplace_key: str, renter: str
) -> None:
    runtime = app.state.runtime
    now = utcnow()
    async with session_scope(runtime.sessionmaker) as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.name == "marketplace"))
        assert key_id is not None
        for age_s in (120, 61, 30):
            issued = now - timedelta(seconds=age_s)
            tickets.issue(session, key_id, renter, issued, timedelta(seconds=60))
    assert await tickets.purge_expired(runtime.sessionmaker, now) == 2
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(StreamTicket)) == 1
