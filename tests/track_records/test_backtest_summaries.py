"""The track record's latest backtest per bot version: runs of the bot's developer, an admin
or an operator (command line), never a renter's; the latest to finish; succeeded only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from app.backtests import service
from app.backtests.flows import BacktestFlows
from app.backtests.repository import Owner
from app.backtests.schemas import BacktestCreate
from app.bots import repository as bots
from app.core.db import session_scope, utcnow
from app.core.settings import Settings
from app.models import Backtest
from tests.backtests.conftest import WINDOW, list_bot, make_bot, start
from tests.helpers import headers, new_principal
from tests.trading.conftest import Queue

FRACTIONS = ("total_return", "buy_and_hold_return", "max_drawdown")


async def _stored(app: FastAPI, backtest_id: str) -> Backtest:
    async with app.state.runtime.sessionmaker() as session:
        backtest = await session.get(Backtest, backtest_id)
        assert backtest is not None and backtest.status == "succeeded", backtest
        return backtest


def _summary_of(backtest: Backtest) -> dict[str, Any]:
    """What the record must show of a finished backtest: its stored window and metrics."""
    metrics = backtest.result["metrics"] if backtest.result else {}
    return {
        "version": backtest.bot_version,
        "symbol": backtest.symbol,
        "timeframe": backtest.timeframe,
        "start": backtest.start_at.isoformat().replace("+00:00", "Z"),
        "end": backtest.end_at.isoformat().replace("+00:00", "Z"),
        "llm": backtest.llm,
        **{name: Decimal(metrics[name]) for name in FRACTIONS},
        "sharpe": metrics["sharpe"],
        "trades": metrics["trades"],
    }


def _comparable(shown: dict[str, Any]) -> dict[str, Any]:
    # Amounts are spelt without trailing zeros in bodies, and with 8 places in results.
    return {**shown, **{name: Decimal(shown[name]) for name in FRACTIONS}}


async def test_the_latest_public_backtest_of_each_version(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    admin_key: str,
    marketplace_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    flows, _ = backtests
    bot = await make_bot(client, developer_key)
    await list_bot(client, developer_key, bot)
    renter = headers(marketplace_key, new_principal())

    async def run(who: dict[str, str], **body: Any) -> str:
        started = await start(client, bot, who, **body)
        assert started.status_code == 202, started.text
        await flows.run(started.json()["id"])
        return str(started.json()["id"])

    # Version 1: the developer's run, then a later one over a longer window, which shows;
    # a renter's run that finishes after both does not, nor a run that has not finished.
    earlier = await run(headers(developer_key), start="2026-01-08T00:00:00Z")
    developers = await run(headers(developer_key), end="2026-02-01T00:00:00Z")
    renters = await run(renter, start="2026-01-04T00:00:00Z")
    queued = await start(client, bot, headers(developer_key), start="2026-01-10T00:00:00Z")
    assert queued.status_code == 202

    # Version 2: an admin's run, then an operator's from the command line, which shows.
    changed = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"strategy": {"ensemble": {"threshold": "0.1"}}},
        headers=headers(developer_key),
    )
    assert changed.json()["version"] == 2
    admins = await run(headers(admin_key), end="2026-02-01T00:00:00Z")
    async with session_scope(app.state.runtime.sessionmaker) as session:
        row = await bots.get(session, bot["id"])
        assert row is not None
        body = BacktestCreate.model_validate({**WINDOW, "start": "2026-01-11T00:00:00Z"})
        operators = (await service.create(session, row, Owner(), body, settings, utcnow())).id
    await flows.run(operators)

    # Version 3: a renter's run only.
    changed = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"strategy": {"ensemble": {"threshold": "0.15"}}},
        headers=headers(developer_key),
    )
    assert changed.json()["version"] == 3
    renters_only = await run(renter)

    stored = {
        backtest_id: await _stored(app, backtest_id)
        for backtest_id in (earlier, developers, renters, admins, operators, renters_only)
    }
    summaries = {backtest_id: _summary_of(row) for backtest_id, row in stored.items()}
    # Picking any other run of a version would show other figures.
    assert len({str(summary) for summary in summaries.values()}) == len(summaries)

    response = await client.get(
        f"/api/v1/bots/{bot['id']}/track-record", headers=headers(marketplace_key)
    )
    assert response.status_code == 200, response.text
    shown = response.json()["backtests"]
    assert [_comparable(summary) for summary in shown] == [
        summaries[developers],
        summaries[operators],
    ]
    assert list(shown[0]) == [
        "version",
        "symbol",
        "timeframe",
        "start",
        "end",
        "llm",
        "total_return",
        "buy_and_hold_return",
        "max_drawdown",
        "sharpe",
        "trades",
    ]
    # No backtest can be looked up, nor a renter's run told apart, from the record.
    assert not [backtest_id for backtest_id in stored if backtest_id in response.text]
    assert queued.json()["id"] not in response.text
