"""The run: chunked and resumable. A worker that dies mid-run leaves its saved state, the
sweep resends the run once its lease is over, and the resumed run ends with the same result
as one run in one go; a task hands over to a fresh one after its budget."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from app.backtests.flows import CHUNK, QUEUED_GRACE_S, BacktestFlows
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.llm.registry import VoterPool
from app.models import Backtest
from tests.backtests.conftest import make_bot, start
from tests.helpers import Clock, headers
from tests.trading.conftest import Queue
from workers.celery_app import celery_app
from workers.schedule import beat_schedule

# Three chunks of 1h candles.
LONG = {"start": "2025-11-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}


class WorkerDied(Exception):
    """Stands for the worker process dying right after its first chunk was saved."""


def die_after_first_chunk(done: int, total: int) -> None:
    raise WorkerDied


async def row(app: FastAPI, backtest_id: str) -> Backtest:
    async with app.state.runtime.sessionmaker() as session:
        backtest = await session.get(Backtest, backtest_id)
    assert backtest is not None
    return backtest


def canonical(result: dict | None) -> str:
    return json.dumps(result, sort_keys=True)


async def test_a_run_whose_worker_died_is_resumed_by_the_sweep_to_the_same_result(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    clients: BinanceClients,
) -> None:
    bot = await make_bot(client, developer_key)
    key = headers(developer_key)
    whole = (await start(client, bot, key, **LONG)).json()["id"]
    crashed = (await start(client, bot, key, **LONG)).json()["id"]
    clock, queue, voters = Clock.real(), Queue(), VoterPool(settings)
    flows = BacktestFlows(app.state.runtime.sessionmaker, clients, voters, settings, queue, clock)

    await flows.run(whole, budget_s=None)
    try:
        await flows.run(crashed, progress=die_after_first_chunk)
    except WorkerDied:
        pass
    stalled = await row(app, crashed)
    assert stalled.status == "running" and stalled.candles_done == CHUNK
    assert stalled.state is not None and stalled.candles_total == 1464

    assert await flows.resume_stalled(clock()) == []  # its lease still runs
    await flows.run(crashed)  # a redelivered task while the lease runs does nothing
    assert (await row(app, crashed)).candles_done == CHUNK

    clock.advance(flows.lease.total_seconds() + 1)
    assert await flows.resume_stalled(clock()) == [crashed]
    assert queue.named("backtests.run") == [{"backtest_id": crashed}]
    await flows.run(crashed, budget_s=None)

    resumed, reference = await row(app, crashed), await row(app, whole)
    assert resumed.status == reference.status == "succeeded"
    assert resumed.fence == 2 and resumed.candles_done == 1464
    assert canonical(resumed.result) == canonical(reference.result)
    await voters.aclose()


async def test_a_task_hands_the_rest_to_a_fresh_task_after_its_budget(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    flows, queue = backtests
    bot = await make_bot(client, developer_key)
    backtest_id = (await start(client, bot, headers(developer_key), **LONG)).json()["id"]

    await flows.run(backtest_id, budget_s=0)

    handed = await row(app, backtest_id)
    assert handed.status == "running" and handed.candles_done == CHUNK
    assert queue.named("backtests.run") == [{"backtest_id": backtest_id}]
    await flows.run(backtest_id, budget_s=None)  # the continuation takes it at once
    assert (await row(app, backtest_id)).status == "succeeded"


async def test_a_queued_run_whose_job_was_lost_is_sent_again(
    app: FastAPI,
    client: httpx.AsyncClient,
    developer_key: str,
    backtests: tuple[BacktestFlows, Queue],
) -> None:
    flows, queue = backtests
    bot = await make_bot(client, developer_key)
    backtest_id = (await start(client, bot, headers(developer_key))).json()["id"]
    now = datetime.now(UTC)
    assert await flows.resume_stalled(now) == []
    later = now + timedelta(seconds=QUEUED_GRACE_S + 1)
    assert await flows.resume_stalled(later) == [backtest_id]
    assert queue.named("backtests.run") == [{"backtest_id": backtest_id}]


def test_the_task_and_its_sweep_are_registered_and_scheduled(settings: Settings) -> None:
    celery_app.loader.import_default_modules()
    assert {"backtests.run", "backtests.resume"} <= set(celery_app.tasks)
    run = celery_app.tasks["backtests.run"]
    assert run.soft_time_limit < run.time_limit <= settings.celery_visibility_timeout_s
    schedule = beat_schedule(settings)["resume-backtests"]
    assert schedule["task"] == "backtests.resume"
