"""The developer's pages, on a real database: their bots with today's figures, a bot's charts,
decisions with every vote, voters and versions, and backtests started from a form, watched,
drawn and compared."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.backtests.flows import BacktestFlows
from app.core.db import utcnow
from app.core.settings import Settings
from app.models import Backtest, BotVersion, Decision, LlmVote
from app.trading.events import decision_made
from tests.api.test_contract import create_bot, listed_bot
from tests.backtests.conftest import WINDOW
from tests.conftest import make_key
from tests.console.conftest import sign_in, signed_in_csrf
from tests.helpers import headers, new_principal
from tests.trading.conftest import Queue, count

POINTS = re.compile(r'<polyline class="(\w+)" points="([^"]*)"')


async def add_decision(
    sessionmaker: async_sessionmaker[AsyncSession],
    version_id: str,
    reasoning: str,
    cost: str = "0.25",
    action: str = "BUY",
    minutes_ago: int = 0,
) -> str:
    """A decision on the current hour's candle (or one `minutes_ago` earlier, for a second
    decision of the same hour) with one vote of a fake OpenAI voter, told to the event outbox
    as trading tells it."""
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    async with sessionmaker() as session:
        decision = Decision(
            bot_version_id=version_id,
            symbol="BTCUSDT",
            timeframe="1h",
            candle_open_at=hour - timedelta(minutes=minutes_ago),
            indicators={},
            indicator_score=Decimal("0.5"),
            combined_score=Decimal("0.75"),
            action=action,
            rule_version="test",
            rule_params={},
        )
        session.add(decision)
        await session.flush()
        vote = LlmVote(
            decision_id=decision.id,
            provider="openai",
            model="gpt-test",
            weight=Decimal(1),
            action=action,
            confidence=Decimal("0.8"),
            reasoning=reasoning,
            cost_usd=Decimal(cost),
        )
        session.add(vote)
        version = await session.get(BotVersion, version_id)
        assert version is not None
        decision_made(session, version.bot_id, decision, [vote])
        await session.commit()
        return decision.id


async def subscribe_paper(client: httpx.AsyncClient, key: str, bot_id: str) -> None:
    response = await client.post(
        "/api/v1/subscriptions",
        json={
            "bot_id": bot_id,
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "mode": "paper",
            "quote_amount": "100",
        },
        headers=headers(key, new_principal()),
    )
    assert response.status_code == 201, response.text


async def start_from_form(client: httpx.AsyncClient, bot_id: str, **fields: str) -> httpx.Response:
    form = await client.get(f"/console/bots/{bot_id}/backtests/new")
    assert form.status_code == 200
    token = await signed_in_csrf(client)
    return await client.post(
        f"/console/bots/{bot_id}/backtests",
        data={"csrf_token": token, **{k: v for k, v in WINDOW.items()}, **fields},
    )


def field_errors(page: httpx.Response) -> dict[str, str]:
    assert page.status_code == 422
    return dict(re.findall(r'data-field="(\w+)">([^<]*)<', page.text))


def row_of(page: str, bot_id: str) -> str:
    start = page.index(f'data-bot-id="{bot_id}"')
    return page[start : page.index("</tr>", start)]


async def test_my_bots_lists_mine_with_renters_decisions_and_llm_spend(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    bot = await listed_bot(client, developer_key, name="mine")
    other_developer = await make_key(settings, Scope.developer, "other")
    theirs = await create_bot(client, other_developer, name="theirs")
    for _ in range(2):
        await subscribe_paper(client, marketplace_key, bot["id"])
    await add_decision(app.state.runtime.sessionmaker, bot["version_id"], "momentum", cost="0.25")
    await sign_in(client, developer_key)

    page = await client.get("/console/bots")

    assert page.status_code == 200
    assert theirs["id"] not in page.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row_of(page.text, bot["id"]), re.S)
    assert [c.strip() for c in cells[1:]] == [
        "active",
        "1",
        "2 / 0 / 0",
        "1",
        "0.2500",
        "0.2500",
        str(Decimal(bot["strategy"]["llm_daily_budget_usd"]).quantize(Decimal("0.0001"))),
    ]


async def test_an_admin_sees_every_bot_and_lists_paginate(
    client: httpx.AsyncClient, developer_key: str, admin_key: str
) -> None:
    made = [await create_bot(client, developer_key, name=f"bot {n}") for n in range(3)]
    await sign_in(client, admin_key)
    first = await client.get("/console/bots", params={"limit": 2})
    assert first.text.count("data-bot-id=") == 2
    [next_link] = re.findall(r'href="(/console/bots\?cursor=[^"]+)"', first.text)
    second = await client.get(next_link.replace("&amp;", "&"))
    assert second.text.count("data-bot-id=") == 1
    shown = re.findall(r'data-bot-id="(\w+)"', first.text + second.text)
    assert sorted(shown) == sorted(b["id"] for b in made)


async def test_the_bot_page_draws_the_latest_backtest_and_shows_votes_voters_and_versions(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    bot = await create_bot(client, developer_key)
    changed = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"strategy": {**bot["strategy"], "llm_daily_budget_usd": "2"}},
        headers=headers(developer_key),
    )
    assert changed.status_code == 200, changed.text
    await add_decision(
        app.state.runtime.sessionmaker, changed.json()["version_id"], "RSI turned up from 28"
    )
    await sign_in(client, developer_key)
    started = await start_from_form(client, bot["id"])
    assert started.status_code == 303, started.text
    backtest_id = started.headers["location"].rsplit("/", 1)[1]
    await backtests[0].run(backtest_id)

    page = await client.get(f"/console/bots/{bot['id']}")

    assert page.status_code == 200
    lines = dict(POINTS.findall(page.text))
    equity = [tuple(map(float, p.split(","))) for p in lines["line"].split()]
    drawdown = [tuple(map(float, p.split(","))) for p in lines["drawdown"].split()]
    async with app.state.runtime.sessionmaker() as session:
        result = (await session.get(Backtest, backtest_id)).result
    assert len(equity) == len(drawdown) == len(result["equity"]) == 337
    assert f'data-points="{len(equity)}"' in page.text
    assert f'data-first="{float(result["equity"][0][1]):.4f}"' in page.text
    assert f'data-last="{float(result["equity"][-1][1]):.4f}"' in page.text
    assert len({y for _, y in equity}) > 1  # a line that moves, not a flat one
    assert "RSI turned up from 28" in page.text and "openai / gpt-test" in page.text
    assert "llm_daily_budget_usd" in page.text  # what changed in version 2
    assert 'data-poll="/console/bots/' in page.text


async def test_the_decisions_fragment_shows_a_new_decision(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    await sign_in(client, developer_key)
    path = f"/console/bots/{bot['id']}/decisions"
    before = await client.get(path, headers={"X-Console-Fragment": "1"})
    assert before.status_code == 200 and "No decision yet" in before.text
    decision_id = await add_decision(
        app.state.runtime.sessionmaker, bot["version_id"], "breakout above the band"
    )
    after = await client.get(path, headers={"X-Console-Fragment": "1"})
    assert f'data-decision-id="{decision_id}"' in after.text
    assert "breakout above the band" in after.text
    assert after.text.lstrip().startswith("<section")  # a fragment, not a page


async def test_a_backtest_form_answers_bad_input_field_by_field(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    await sign_in(client, developer_key)
    refused = await start_from_form(client, bot["id"], symbol="btc", quote_amount="0")
    assert refused.status_code == 422
    errors = field_errors(refused)
    assert set(errors) == {"symbol", "quote_amount"}
    assert "upper-case" in errors["symbol"] and "greater than 0" in errors["quote_amount"]
    assert 'value="btc"' in refused.text  # what was typed is kept
    backwards = await start_from_form(client, bot["id"], start="2026-02-01", end="2026-01-01")
    assert field_errors(backwards) == {"end": "start must be before end"}
    too_long = await start_from_form(client, bot["id"], start="2000-01-01", end="2026-01-01")
    assert too_long.status_code == 422
    assert "candles" in field_errors(too_long)["end"]
    no_version = await start_from_form(client, bot["id"], version="7")
    assert field_errors(no_version) == {"version": "the bot has no version 7"}
    assert await count(app, Backtest) == 0


async def test_starting_a_backtest_needs_the_csrf_token(
    app: FastAPI, client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    await sign_in(client, developer_key)
    refused = await client.post(f"/console/bots/{bot['id']}/backtests", data=WINDOW)
    assert refused.status_code == 403
    assert await count(app, Backtest) == 0


async def test_a_backtest_page_shows_progress_then_the_result_and_two_compare(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    bot = await create_bot(client, developer_key)
    await sign_in(client, developer_key)
    ids = []
    for llm in ("indicators", "recorded"):
        started = await start_from_form(client, bot["id"], llm=llm)
        assert started.status_code == 303, started.text
        ids.append(started.headers["location"].rsplit("/", 1)[1])
    queued = await client.get(f"/console/backtests/{ids[0]}/progress")
    assert 'data-status="queued"' in queued.text and "data-poll=" in queued.text
    for backtest_id in ids:
        await backtests[0].run(backtest_id)
    done = await client.get(f"/console/backtests/{ids[0]}/progress")
    assert 'data-status="succeeded"' in done.text and 'data-percent="100.00"' in done.text
    assert "data-reload" in done.text and "data-poll=" not in done.text
    page = await client.get(f"/console/backtests/{ids[0]}")
    assert dict(POINTS.findall(page.text)).keys() == {"line", "drawdown"}
    assert "data-reload" not in page.text and '<h2 id="trades-heading">' in page.text

    compared = await client.get("/console/backtests/compare", params={"a": ids[0], "b": ids[1]})

    assert compared.status_code == 200
    assert len(POINTS.findall(compared.text)) == 4
    assert 'id="run-1-equity-chart"' in compared.text and 'id="run-2-equity-chart"' in compared.text


async def test_another_developers_bot_and_backtest_are_not_found(
    client: httpx.AsyncClient, settings: Settings, developer_key: str
) -> None:
    other_key = await make_key(settings, Scope.developer, "other")
    theirs = await create_bot(client, other_key)
    started = await client.post(
        f"/api/v1/bots/{theirs['id']}/backtests", json=WINDOW, headers=headers(other_key)
    )
    await sign_in(client, developer_key)
    for path in (
        f"/console/bots/{theirs['id']}",
        f"/console/bots/{theirs['id']}/decisions",
        f"/console/bots/{theirs['id']}/backtests/new",
        f"/console/backtests/{started.json()['id']}",
        f"/console/backtests/{started.json()['id']}/progress",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert "not found" in response.text and response.headers["content-type"].startswith(
            "text/html"
        )
