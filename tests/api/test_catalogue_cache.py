"""Each API process serves catalogue pages from memory for a few seconds, and a bot's change
reaches them at once in its own process and, through Redis, in the others."""

from __future__ import annotations

import asyncio
import time

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from app.bots.catalogue import CATALOGUE_TTL_S
from app.core.db import session_scope
from app.core.pagination import encode_cursor
from app.core.settings import Settings
from app.models import Bot
from tests.helpers import headers

EVICTION_S = 0.5  # how long Redis may take to tell another process, with its listener's wake-up


async def _new_bot(client: httpx.AsyncClient, key: str, name: str) -> str:
    created = await client.post("/api/v1/bots", json={"name": name}, headers=headers(key))
    assert created.status_code == 201, created.text
    bot_id: str = created.json()["id"]
    return bot_id


async def _listed_name(client: httpx.AsyncClient, key: str, bot_id: str) -> str | None:
    # The page that starts at the bot: ids are 32 hex digits, the cursor the one just before.
    cursor = encode_cursor(f"{int(bot_id, 16) - 1:032x}")
    page = await client.get(f"/api/v1/bots?limit=1&cursor={cursor}", headers=headers(key))
    assert page.status_code == 200, page.text
    names = {bot["id"]: bot["name"] for bot in page.json()["items"]}
    return names.get(bot_id)


async def test_a_page_is_read_once_per_ttl(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    bot_id = await _new_bot(client, developer_key, "as listed")
    # With Redis, this process also hears its own creation's eviction back: let it arrive
    # before the page is read, or it empties the cache this test is looking at.
    await asyncio.sleep(EVICTION_S)
    assert await _listed_name(client, developer_key, bot_id) == "as listed"
    # Changed behind the API's back (no eviction): the page served is still the one read.
    async with session_scope(app.state.runtime.sessionmaker) as session:
        await session.execute(update(Bot).where(Bot.id == bot_id).values(name="behind its back"))
    assert await _listed_name(client, developer_key, bot_id) == "as listed"


async def test_a_change_through_the_api_is_listed_at_once(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    bot_id = await _new_bot(client, developer_key, "before")
    assert await _listed_name(client, developer_key, bot_id) == "before"
    patched = await client.patch(
        f"/api/v1/bots/{bot_id}", json={"name": "after"}, headers=headers(developer_key)
    )
    assert patched.status_code == 200, patched.text
    assert await _listed_name(client, developer_key, bot_id) == "after"


async def test_a_change_reaches_another_process_at_once_with_redis_else_within_the_ttl(
    client: httpx.AsyncClient,
    second_process: httpx.AsyncClient,
    developer_key: str,
    settings: Settings,
) -> None:
    # With Redis (the MariaDB run) the eviction is published and arrives in milliseconds: a
    # tenth of the TTL, so an eviction that is never published fails here, when the page's
    # TTL runs out. Without Redis, the TTL is what bounds the delay.
    within_s = EVICTION_S if settings.redis_url else CATALOGUE_TTL_S + 0.5
    bot_id = await _new_bot(client, developer_key, "before")
    assert await _listed_name(second_process, developer_key, bot_id) == "before"
    changed_at = time.monotonic()
    patched = await client.patch(
        f"/api/v1/bots/{bot_id}", json={"name": "after"}, headers=headers(developer_key)
    )
    assert patched.status_code == 200, patched.text
    while await _listed_name(second_process, developer_key, bot_id) != "after":
        assert time.monotonic() - changed_at < within_s, f"the change took over {within_s} s"
        await asyncio.sleep(0.05)
