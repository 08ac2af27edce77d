"""Who pays for a bot's LLM calls: a model is billed at least the service's price, only an
admin prices a voter, and a zero budget or cap asks nobody. Each rule is shown through the
API and the real decision path against the fake LLM servers, which count what they receive."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.core.locks import NamedLocks
from app.core.settings import Settings
from app.integrations.llm.registry import VoterPool
from app.main import create_app
from app.models import LlmVote
from app.trading.decide import DecisionMaker
from app.trading.market_data import MarketData, MemoryCandleCache
from tests.api.test_contract import assert_error
from tests.backtests.conftest import start
from tests.fakes import RunningFakes
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import fresh_clients

NOW = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
FREE = {"input": "0", "output": "0"}
O1_PRO_FOR_FREE = {"provider": "openai", "model": "o1-pro", "price": FREE}
LOCAL = {"provider": "openai_compatible", "model": "llama3.1", "price": FREE}


@pytest.fixture
def llm_settings(settings: Settings, llm_fakes: RunningFakes) -> Settings:
    """Every provider answered by the fakes; the OpenAI-compatible server is the OpenAI fake."""
    overrides = {
        **llm_fakes.settings_overrides(),
        "openai_compatible_base_url": f"{llm_fakes.url}/v1",
    }
    return settings.model_copy(
        update=Settings(**overrides).model_dump(include=set(overrides)) | {"llm_timeout_s": 1.5}
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API of a service with these settings, and a client of it."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://llm") as http:
            yield application, http


@pytest.fixture
async def api(
    app: FastAPI, llm_settings: Settings
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with serving(llm_settings) as served:
        yield served


@pytest.fixture
def llm_app(api: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return api[0]


@pytest.fixture
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture
async def maker(
    llm_app: FastAPI, llm_settings: Settings, sandbox: SandboxServer
) -> AsyncIterator[DecisionMaker]:
    voters = VoterPool(llm_settings)
    async with fresh_clients(sandbox) as clients:
        market = MarketData(clients, MemoryCandleCache(), NamedLocks(None))
        yield DecisionMaker(llm_app.state.runtime.sessionmaker, market, voters, llm_settings)
    await voters.aclose()


def requests_to_llms(fakes: RunningFakes) -> int:
    return sum(fake.requests for fake in fakes.all)


async def make_bot(client: httpx.AsyncClient, key: str, **strategy: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/bots", json={"name": "costly", "strategy": strategy}, headers=headers(key)
    )


async def created(client: httpx.AsyncClient, key: str, **strategy: Any) -> dict:
    response = await make_bot(client, key, **strategy)
    assert response.status_code == 201, response.text
    return response.json()


async def votes_of(llm_app: FastAPI, decision_id: str) -> list[LlmVote]:
    async with llm_app.state.runtime.sessionmaker() as session:
        return list(
            await session.scalars(select(LlmVote).where(LlmVote.decision_id == decision_id))
        )


async def test_a_developer_may_not_price_a_voter(
    client: httpx.AsyncClient, developer_key: str, llm_fakes: RunningFakes
) -> None:
    refused = await make_bot(
        client, developer_key, voters=[O1_PRO_FOR_FREE] * 8, llm_daily_budget_usd="0"
    )
    assert_error(refused, 403, "FORBIDDEN")
    assert [d["loc"] for d in refused.json()["error"]["details"]] == [
        f"body.strategy.voters.{i}.price" for i in range(8)
    ]
    assert "price" in refused.json()["error"]["message"]

    bot = await created(client, developer_key)
    for voter in (
        O1_PRO_FOR_FREE,
        {"provider": "openai", "model": "gpt-4o-mini", "price": FREE},
        # The zero local price, but on another model of the OpenAI-compatible server.
        {**LOCAL, "model": "a-hosted-model"},
        {**LOCAL, "price": {"input": "0.01", "output": "0"}},
    ):
        patched = await client.patch(
            f"/api/v1/bots/{bot['id']}",
            json={"strategy": {"voters": [voter]}},
            headers=headers(developer_key),
        )
        assert_error(patched, 403, "FORBIDDEN")
        assert patched.json()["error"]["details"][0]["loc"] == "body.strategy.voters.0.price"
    assert requests_to_llms(llm_fakes) == 0


async def test_a_developer_sends_back_the_strategy_they_read(
    client: httpx.AsyncClient, developer_key: str, admin_key: str
) -> None:
    # The service's own default panel gives its local model a price of 0.
    bot = await created(client, developer_key)
    assert {**LOCAL, "weight": "1"} in bot["strategy"]["voters"]
    strategy = {**bot["strategy"], "llm_daily_budget_usd": "1"}
    again = await client.patch(
        f"/api/v1/bots/{bot['id']}", json={"strategy": strategy}, headers=headers(developer_key)
    )
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 2

    # A price an admin gave a voter stays when the owner sends it back unchanged.
    priced = {
        "provider": "openai_compatible",
        "model": "qwen3",
        "price": {"input": "0.2", "output": "0.4"},
    }
    by_admin = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"strategy": {**strategy, "voters": [priced]}},
        headers=headers(admin_key),
    )
    assert by_admin.status_code == 200, by_admin.text
    kept = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"strategy": {**by_admin.json()["strategy"], "llm_daily_budget_usd": "2"}},
        headers=headers(developer_key),
    )
    assert kept.status_code == 200, kept.text
    cheaper = {**priced, "price": {"input": "0.1", "output": "0.4"}}
    assert_error(
        await client.patch(
            f"/api/v1/bots/{bot['id']}",
            json={"strategy": {"voters": [cheaper]}},
            headers=headers(developer_key),
        ),
        403,
        "FORBIDDEN",
    )


async def test_a_model_the_service_prices_is_billed_at_least_that(
    llm_app: FastAPI,
    client: httpx.AsyncClient,
    admin_key: str,
    maker: DecisionMaker,
    llm_fakes: RunningFakes,
) -> None:
    # Even an admin's price cannot make a priced model cheaper than the service's table.
    free_mini = {"provider": "openai", "model": "gpt-4o-mini", "price": FREE}
    bot = await created(client, admin_key, voters=[free_mini], llm_daily_budget_usd="1")

    ask = await start(client, bot, headers(admin_key), llm="ask", max_llm_cost_usd="100")
    assert ask.status_code == 202, ask.text
    assert Decimal(ask.json()["llm_estimate_usd"]) > 0

    decision = await maker.decide(bot["version_id"], "BTCUSDT", "1h", now=NOW)
    (vote,) = await votes_of(llm_app, decision.id)
    # 120 tokens in, 40 out at gpt-4o-mini's 0.15 / 0.60 USD per million.
    assert vote.cost_usd == Decimal("0.000042")
    assert llm_fakes.openai.requests == 1


async def test_a_zero_budget_asks_nobody_live(
    llm_app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    maker: DecisionMaker,
    llm_fakes: RunningFakes,
) -> None:
    # A free local model still asks nobody when the bot's budget is 0.
    bot = await created(client, developer_key, voters=[LOCAL], llm_daily_budget_usd="0")
    decision = await maker.decide(bot["version_id"], "BTCUSDT", "1h", now=NOW)
    assert requests_to_llms(llm_fakes) == 0
    assert await votes_of(llm_app, decision.id) == []
    assert decision.fallback_reason is not None and "budget" in decision.fallback_reason


async def test_an_ask_backtest_with_a_zero_cap_or_budget_is_refused(
    client: httpx.AsyncClient, developer_key: str, llm_fakes: RunningFakes
) -> None:
    free = await created(client, developer_key, voters=[LOCAL])
    zero_cap = await start(client, free, headers(developer_key), llm="ask", max_llm_cost_usd="0")
    assert_error(zero_cap, 422, "VALIDATION_ERROR")
    assert zero_cap.json()["error"]["details"][0]["loc"] == "body.max_llm_cost_usd"

    no_budget = await created(client, developer_key, voters=[LOCAL], llm_daily_budget_usd="0")
    refused = await start(
        client, no_budget, headers(developer_key), llm="ask", max_llm_cost_usd="1"
    )
    assert_error(refused, 422, "VALIDATION_ERROR")
    assert refused.json()["error"]["details"][0]["loc"] == "body.llm"
    assert requests_to_llms(llm_fakes) == 0
