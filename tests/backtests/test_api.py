"""The backtest API: who may start and see one, idempotent starts, validation, progress and
result, cancel, and `ask`'s cost refused up front."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select

from app.backtests.flows import BacktestFlows
from app.bots import budget
from app.core.settings import Settings
from app.main import create_app
from app.models import Backtest
from tests.api.test_contract import assert_error
from tests.backtests.conftest import list_bot, make_bot, start
from tests.conftest import make_key
from tests.helpers import headers, new_principal
from tests.trading.conftest import Queue


async def test_a_developer_starts_a_backtest_of_their_bot_and_reads_its_result(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    bot = await make_bot(client, developer_key)
    created = await start(client, bot, headers(developer_key))
    assert created.status_code == 202, created.text
    view = created.json()
    assert view["status"] == "queued" and view["version"] == 1 and view["llm"] == "indicators"
    assert view["progress"] == {"candles_done": 0, "candles_total": 336, "percent": "0"}
    assert view["result"] is None

    flows, _ = backtests
    await flows.run(view["id"])

    done = await client.get(f"/api/v1/backtests/{view['id']}", headers=headers(developer_key))
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "succeeded" and body["error"] is None
    assert body["progress"] == {"candles_done": 336, "candles_total": 336, "percent": "100"}
    metrics = body["result"]["metrics"]
    assert {"total_return", "buy_and_hold_return", "max_drawdown", "sharpe"} <= set(metrics)
    assert len(body["result"]["equity"]) == 1 + 336  # the start, then every close


async def test_the_api_sends_the_run_after_the_commit(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    from tests.api.test_jobs import queued_task_names

    bot = await make_bot(client, developer_key)
    assert (await start(client, bot, headers(developer_key))).status_code == 202
    await app.state.runtime.jobs.drain()
    assert queued_task_names(settings) == ["backtests.run"]


async def test_who_may_start_and_see_a_backtest(
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    admin_key: str,
    marketplace_key: str,
) -> None:
    other_developer = await make_key(settings, *_developer())
    bot = await make_bot(client, developer_key)
    unlisted = await make_bot(client, developer_key)
    await list_bot(client, developer_key, bot)
    renter, stranger = new_principal(), new_principal()

    assert_error(await start(client, bot, headers(other_developer)), 404, "NOT_FOUND")
    assert (await start(client, bot, headers(admin_key))).status_code == 202
    by_renter = await start(client, bot, headers(marketplace_key, renter))
    assert by_renter.status_code == 202
    assert_error(await start(client, unlisted, headers(marketplace_key, renter)), 404, "NOT_FOUND")
    assert_error(await start(client, bot, headers(marketplace_key)), 422, "VALIDATION_ERROR")
    own = await start(client, bot, headers(developer_key))
    assert own.status_code == 202

    cases = [
        (own.json()["id"], headers(other_developer)),
        (own.json()["id"], headers(admin_key)),  # an admin sees the backtests it started
        (by_renter.json()["id"], headers(marketplace_key, stranger)),
        (by_renter.json()["id"], headers(developer_key)),
    ]
    missing = await client.get("/api/v1/backtests/nope", headers=headers(developer_key))
    assert_error(missing, 404, "NOT_FOUND")
    for backtest_id, who in cases:
        foreign = await client.get(f"/api/v1/backtests/{backtest_id}", headers=who)
        assert foreign.status_code == 404 and foreign.content == missing.content
        refused = await client.delete(f"/api/v1/backtests/{backtest_id}", headers=who)
        assert refused.status_code == 404 and refused.content == missing.content
    mine = await client.get(
        f"/api/v1/backtests/{by_renter.json()['id']}", headers=headers(marketplace_key, renter)
    )
    assert mine.status_code == 200


def _developer() -> tuple:
    from app.api_keys.schemas import Scope

    return Scope.developer, "another developer"


async def test_a_replicated_start_makes_one_backtest_and_identical_bytes(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await make_bot(client, developer_key)
    replicated = headers(developer_key, idempotency_key="backtest-1")
    first = await start(client, bot, replicated)
    second = await start(client, bot, replicated)
    assert first.status_code == second.status_code == 202
    assert first.content == second.content
    async with app.state.runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Backtest)) == 1
    changed = await start(client, bot, replicated, quote_amount="2000")
    assert_error(changed, 409, "IDEMPOTENCY_KEY_REUSED")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"start": "2026-01-15T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "body"),
        ({"end": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "body"),
        ({"timeframe": "1m", "start": "2025-01-01T00:00:00Z"}, "body.end"),  # > 100,000
        ({"start": "2026-01-01T00:30:00Z", "end": "2026-01-01T00:59:00Z"}, "body.end"),  # none
        ({"quote_amount": "0"}, "body.quote_amount"),
        ({"quote_amount": "1000001"}, "body.quote_amount"),
        ({"start": "2026-01-01T00:00:00"}, "body.start"),  # no timezone
        ({"llm": "psychic"}, "body.llm"),
        ({"version": 2}, "body.version"),
    ],
)
async def test_a_bad_window_is_a_clear_422(
    client: httpx.AsyncClient, developer_key: str, body: dict, field: str
) -> None:
    bot = await make_bot(client, developer_key)
    refused = await start(client, bot, headers(developer_key), **body)
    assert_error(refused, 422, "VALIDATION_ERROR")
    assert [d["loc"] for d in refused.json()["error"]["details"]] == [field]


async def test_cancel_stops_a_run_and_a_finished_one_stays(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    flows, _ = backtests
    bot = await make_bot(client, developer_key)
    key = headers(developer_key)
    running = (await start(client, bot, key)).json()["id"]

    cancelled = await client.delete(f"/api/v1/backtests/{running}", headers=key)
    assert cancelled.status_code == 204 and cancelled.content == b""
    again = await client.delete(f"/api/v1/backtests/{running}", headers=key)
    assert again.status_code == 204
    await flows.run(running)  # a task that arrives after the cancel does nothing
    view = (await client.get(f"/api/v1/backtests/{running}", headers=key)).json()
    assert view["status"] == "cancelled" and view["progress"]["candles_done"] == 0

    finished = (await start(client, bot, key)).json()["id"]
    await flows.run(finished)
    assert_error(
        await client.delete(f"/api/v1/backtests/{finished}", headers=key),
        409,
        "INVALID_STATE_TRANSITION",
    )
    view = (await client.get(f"/api/v1/backtests/{finished}", headers=key)).json()
    assert view["status"] == "succeeded"


@pytest.fixture
async def llm_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API of a service with an OpenAI key: new bots vote with gpt-4o-mini."""
    llm = create_app(settings.model_copy(update={"openai_api_key": SecretStr("sk-fake")}))
    async with llm.router.lifespan_context(llm):
        transport = httpx.ASGITransport(app=llm)
        async with httpx.AsyncClient(transport=transport, base_url="http://llm") as http:
            yield llm, http


async def test_ask_is_refused_over_its_cap_and_reserves_its_estimate_on_the_bot_budget(
    app: FastAPI,
    llm_client: tuple[FastAPI, httpx.AsyncClient],
    developer_key: str,
) -> None:
    llm_app, client = llm_client
    bot = await make_bot(client, developer_key, llm_daily_budget_usd="0.5")
    key = headers(developer_key)

    refused = await start(client, bot, key, llm="ask", max_llm_cost_usd="0.01")
    assert_error(refused, 422, "VALIDATION_ERROR")
    assert refused.json()["error"]["details"][0]["loc"] == "body.max_llm_cost_usd"
    assert "may cost up to" in refused.json()["error"]["message"]

    accepted = await start(client, bot, key, llm="ask", max_llm_cost_usd="0.45")
    assert accepted.status_code == 202, accepted.text
    estimate = Decimal(accepted.json()["llm_estimate_usd"])
    assert Decimal("0.01") < estimate <= Decimal("0.45")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    async with llm_app.state.runtime.sessionmaker() as session:
        charged = await budget.spent_between(session, bot["id"], today, today + timedelta(days=1))
    assert charged == estimate  # the live decisions of the bot see it spent

    # The bot's daily budget (0.5 USD) cannot take a second such run.
    over_budget = await start(client, bot, key, llm="ask", max_llm_cost_usd="0.45")
    assert_error(over_budget, 422, "VALIDATION_ERROR")
    assert "budget" in over_budget.json()["error"]["message"]
    assert json.loads(accepted.content)["status"] == "queued"


async def test_a_renter_who_erases_their_data_takes_their_backtests_with_them(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    marketplace_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    bot = await make_bot(client, developer_key)
    await list_bot(client, developer_key, bot)
    renter, other = new_principal(), new_principal()
    finished = (await start(client, bot, headers(marketplace_key, renter))).json()["id"]
    await backtests[0].run(finished)
    running = (await start(client, bot, headers(marketplace_key, renter))).json()["id"]
    kept = (await start(client, bot, headers(marketplace_key, other))).json()["id"]

    erased = await client.delete("/api/v1/principals/me", headers=headers(marketplace_key, renter))
    assert erased.status_code == 204

    async with app.state.runtime.sessionmaker() as session:
        left = set(await session.scalars(select(Backtest.id)))
    assert left == {kept}
    # A worker that held the erased run stops at its next save: the row is gone.
    await backtests[0].run(running)
    async with app.state.runtime.sessionmaker() as session:
        assert await session.get(Backtest, running) is None
