"""The feed's replica window across API processes: an erasure evicts every process's pages
at once (through Redis), so no process serves the renter's events after it."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI

from app.core.settings import Settings
from tests.api.test_catalogue_cache import EVICTION_S
from tests.events.seeding import write_renter_events
from tests.helpers import headers, new_principal


async def _feed(client: httpx.AsyncClient, key: str, principal: str) -> list[str]:
    page = await client.get("/api/v1/events", headers=headers(key, principal))
    assert page.status_code == 200, page.text
    return [item["id"] for item in page.json()["items"]]


async def test_an_erasure_evicts_the_feed_pages_of_every_process(
    client: httpx.AsyncClient,
    second_process: httpx.AsyncClient,
    app: FastAPI,
    marketplace_key: str,
    settings: Settings,
) -> None:
    # With Redis (the MariaDB run) the eviction arrives in milliseconds, well inside the
    # window; without Redis, the window is what bounds it.
    within_s = EVICTION_S if settings.redis_url else settings.feed_replica_window_s + 0.5
    renter = new_principal()
    written = await write_renter_events(app.state.runtime.sessionmaker, renter, 2, numbered=True)
    # Each process holds the renter's page for its window.
    assert await _feed(client, marketplace_key, renter) == written
    assert await _feed(second_process, marketplace_key, renter) == written
    erased = await client.delete("/api/v1/principals/me", headers=headers(marketplace_key, renter))
    assert erased.status_code == 204, erased.text
    erased_at = time.monotonic()
    assert await _feed(client, marketplace_key, renter) == []
    while await _feed(second_process, marketplace_key, renter):
        assert time.monotonic() - erased_at < within_s, f"still served after {within_s} s"
        await asyncio.sleep(0.05)
