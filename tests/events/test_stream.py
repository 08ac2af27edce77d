"""The live stream on a real uvicorn: tickets (single use, expiring, bound to their key), a
renter's events only, subscribe and resume over the WebSocket with no gap and no duplicate at
the seam, Server-Sent Events with Last-Event-ID, a slow client dropped, and a hub that catches
up from the table when no doorbell rang."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.api_keys.schemas import Scope
from app.core.settings import Settings
from app.events.types import EventType
from app.main import create_app
from tests.conftest import make_key, make_settings
from tests.events.stream_client import (
    PATIENCE_S,
    events,
    frame,
    ids,
    renter_id,
    served,
    socket,
    ticket,
    write,
)
from tests.helpers import new_principal

QUEUE = 8


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path).model_copy(
        update={
            "stream_queue_size": QUEUE,
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


class Renter:
    def __init__(self, principal: str, user_id: str) -> None:
        self.principal, self.user_id = principal, user_id


@pytest.fixture
async def renter(writes: async_sessionmaker[AsyncSession]) -> Renter:
    principal = new_principal()
    return Renter(principal, await renter_id(writes, principal))


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
    renter: Renter,
    writes: async_sessionmaker[AsyncSession],
) -> None:
    issued = await ticket(base, marketplace_key, renter.principal)
    assert set(issued) == {"ticket", "expires_at", "url"}
    assert issued["url"].startswith("/api/v1/events/ws?ticket=")
    other = new_principal()
    other_id = await renter_id(writes, other)
    async with socket(base, issued["url"]) as ws:
        await write(writes, other_id, other)
        mine = await write(writes, renter.user_id, renter.principal, 3)
        frames = await events(ws, 3)
    assert ids(frames) == mine
    assert {f["event"]["principal"] for f in frames} == {renter.principal}
    assert list(frames[0]) == ["type", "cursor", "event"]
    assert list(frames[0]["event"]) == [
        "id", "type", "occurred_at", "principal", "subscription_id", "bot_id", "data",
    ]  # fmt: skip

    status, body = await refused(base, issued["url"])
    assert status == 401 and body["error"]["code"] == "UNAUTHENTICATED", body


async def test_what_a_stream_does_not_open_on_is_refused_before_the_upgrade(
    base: str, settings: Settings, marketplace_key: str, admin_key: str, renter: Renter
) -> None:
    other_key = await make_key(settings, Scope.marketplace, "another marketplace")
    issued = await ticket(base, marketplace_key, renter.principal)
    # Shown with another key than the one it was issued to: refused, and used up (whoever
    # showed it had it from elsewhere).
    assert (await refused(base, issued["url"], other_key))[0] == 401
    assert (await refused(base, issued["url"], marketplace_key))[0] == 401
    assert (await refused(base, "/api/v1/events/ws?ticket=made-up"))[0] == 401
    status, body = await refused(base, "/api/v1/events/ws")
    assert status == 401 and body["error"]["details"] == [], body
    # A marketplace key streams a renter's events through a ticket only.
    assert (await refused(base, "/api/v1/events/ws", marketplace_key))[0] == 403
    async with socket(base, (await ticket(base, marketplace_key, renter.principal))["url"]):
        pass
    async with socket(base, "/api/v1/events/ws", admin_key):
        pass


async def test_an_expired_ticket_is_refused(
    app: FastAPI, settings: Settings, marketplace_key: str, renter: Renter
) -> None:
    # A second API on the app's database, whose tickets expire at once.
    short = create_app(settings.model_copy(update={"stream_ticket_ttl_s": 0.05}))
    async with short.router.lifespan_context(short), served(short) as address:
        issued = await ticket(address, marketplace_key, renter.principal)
        await asyncio.sleep(0.1)
        status, body = await refused(address, issued["url"])
    assert status == 401 and "expired" in body["error"]["message"], body
