"""The first-start seed of `make run`: once, usable keys, a demo that can trade both ways."""

from __future__ import annotations

from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from app.core.db import session_scope
from app.demo import DEMO_HOLDING, seed_demo
from app.models import Position
from tests.helpers import headers


async def test_the_demo_is_seeded_once_and_works_through_the_api(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    sessions = app.state.runtime.sessionmaker
    async with session_scope(sessions) as session:
        seed = await seed_demo(session, app.state.runtime.settings, Decimal("60000"))
    assert seed is not None and seed.holds_btc
    async with session_scope(sessions) as session:
        assert await seed_demo(session, app.state.runtime.settings, Decimal("60000")) is None

    renter = headers(seed.marketplace_key, seed.principal)
    sub = (await client.get(f"/api/v1/subscriptions/{seed.subscription_id}", headers=renter)).json()
    assert (sub["symbol"], sub["timeframe"], sub["mode"], sub["status"]) == (
        "BTCUSDT",
        "1m",
        "paper",
        "active",
    )
    bot = (await client.get(f"/api/v1/bots/{seed.bot_id}", headers=headers(seed.admin_key))).json()
    assert bot["strategy"]["ensemble"]["threshold"] == "0.02"
    async with sessions() as session:
        position = (await session.scalars(select(Position))).one()
    assert position.quantity == DEMO_HOLDING and position.average_cost == Decimal(60000)
    assert position.quote_balance == Decimal(1000) - DEMO_HOLDING * 60000
    performance = await client.get(
        f"/api/v1/subscriptions/{seed.subscription_id}/performance", headers=renter
    )
    assert performance.json()["equity"] == "1000"
