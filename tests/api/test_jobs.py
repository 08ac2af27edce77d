"""Jobs from the API reach the broker by task name after the commit, and never on rollback."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from kombu import Connection
from sqlalchemy import text

from app.core.settings import Settings
from tests.api.test_contract import listed_bot
from tests.helpers import headers, new_principal


def queued_task_names(settings: Settings) -> list[str]:
    names = []
    with Connection(settings.broker_url) as connection:
        queue = connection.SimpleQueue("celery")
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            names.append(message.headers["task"])
            message.ack()
        queue.close()
    return names


async def test_a_new_subscription_asks_for_a_dispatch_after_commit(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
) -> None:
    bot = await listed_bot(client, developer_key)
    body = {
        "bot_id": bot["id"],
        "symbol": "BTCUSDT",
        "timeframe": "1m",
        "mode": "paper",
        "quote_amount": "10",
    }
    renter = headers(marketplace_key, new_principal())
    created = await client.post("/api/v1/subscriptions", json=body, headers=renter)
    assert created.status_code == 201
    await app.state.runtime.jobs.drain()  # sent from a thread, off the event loop
    assert queued_task_names(settings) == ["trading.dispatch"]


async def test_jobs_wait_for_the_commit_and_die_with_a_rollback(
    app: FastAPI, settings: Settings
) -> None:
    runtime = app.state.runtime
    async with runtime.sessionmaker() as session:
        runtime.jobs.send_after_commit(session, "trading.dispatch")
        await session.execute(text("SELECT 1"))
        assert queued_task_names(settings) == []  # not before the commit
        await session.rollback()
    await runtime.jobs.drain()
    assert queued_task_names(settings) == []  # and never after a rollback
    async with runtime.sessionmaker() as session:
        runtime.jobs.send_after_commit(session, "performance.snapshot")
        runtime.jobs.send_after_commit(session, "trading.protect")
        await session.commit()
    await runtime.jobs.drain()
    assert queued_task_names(settings) == ["performance.snapshot", "trading.protect"]
