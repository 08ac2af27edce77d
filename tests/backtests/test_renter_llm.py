"""A renter's backtests never touch the LLM budget of the bot they rent: they replay the
recorded votes or indicators only, and `ask` stays the owner's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from app.bots import budget
from app.core.settings import Settings
from tests.api.test_contract import assert_error
from tests.backtests.conftest import list_bot, make_bot, start
from tests.bots.test_llm_cost_rules import serving
from tests.helpers import headers, new_principal


@pytest.fixture
async def api(app: FastAPI, settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A service with an OpenAI key: new bots vote with gpt-4o-mini, at its price."""
    async with serving(settings.model_copy(update={"openai_api_key": SecretStr("sk-x")})) as served:
        yield served


async def spent_today(llm_app: FastAPI, bot: dict) -> Decimal:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    async with llm_app.state.runtime.sessionmaker() as session:
        return await budget.spent_between(session, bot["id"], today, today + timedelta(days=1))


async def test_a_renter_may_not_ask_the_llms_of_a_bot_they_rent(
    api: tuple[FastAPI, httpx.AsyncClient], developer_key: str, marketplace_key: str
) -> None:
    llm_app, client = api
    bot = await make_bot(client, developer_key, llm_daily_budget_usd="1")
    await list_bot(client, developer_key, bot)
    renter = headers(marketplace_key, new_principal())

    asked = await start(client, bot, renter, llm="ask", max_llm_cost_usd="0.45")
    assert_error(asked, 403, "FORBIDDEN")
    assert asked.json()["error"]["details"][0]["loc"] == "body.llm"
    assert await spent_today(llm_app, bot) == 0  # the live decisions keep the whole budget

    for llm in ("recorded", "indicators"):
        replayed = await start(client, bot, renter, llm=llm)
        assert replayed.status_code == 202, replayed.text

    # The owner still may, on the same budget.
    owned = await start(client, bot, headers(developer_key), llm="ask", max_llm_cost_usd="0.45")
    assert owned.status_code == 202, owned.text
    assert await spent_today(llm_app, bot) == Decimal(owned.json()["llm_estimate_usd"]) > 0
