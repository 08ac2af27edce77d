"""Fixtures of the backtest service tests: the flows wired to the sandbox, and helpers that
make bots, listings and backtests through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.backtests.flows import BacktestFlows
from app.core.settings import Settings
from app.integrations.binance.clients import BinanceClients
from app.integrations.llm.registry import VoterPool
from tests.helpers import headers
from tests.sandbox_server import SandboxServer
from tests.trading.conftest import Queue, fresh_clients

# Two weeks of 1h candles, long closed: the sandbox's market is a function of time, so this
# window always holds the same candles.
WINDOW = {
    "symbol": "BTCUSDT",
    "timeframe": "1h",
    "start": "2026-01-01T00:00:00Z",
    "end": "2026-01-15T00:00:00Z",
    "quote_amount": "1000",
    "llm": "indicators",
}
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 1, 15, tzinfo=UTC)


@pytest.fixture
def sandbox_settings(settings: Settings, sandbox: SandboxServer) -> Settings:
    return settings.model_copy(update={"binance_api_url": sandbox.url})


@pytest.fixture
async def clients(sandbox: SandboxServer) -> AsyncIterator[BinanceClients]:
    async with fresh_clients(sandbox) as clients:
        yield clients


@pytest.fixture
async def backtests(
    app: FastAPI, settings: Settings, clients: BinanceClients
) -> AsyncIterator[tuple[BacktestFlows, Queue]]:
    voters, queue = VoterPool(settings), Queue()
    yield BacktestFlows(app.state.runtime.sessionmaker, clients, voters, settings, queue), queue
    await voters.aclose()


async def make_bot(client: httpx.AsyncClient, key: str, **strategy: Any) -> dict:
    response = await client.post(
        "/api/v1/bots", json={"name": "replayed", "strategy": strategy}, headers=headers(key)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def list_bot(
    client: httpx.AsyncClient, key: str, bot: dict, marketplace: str = "default"
) -> None:
    response = await client.post(
        f"/api/v1/bots/{bot['id']}/registrations",
        json={
            "price": "10",
            "currency": "USD",
            "billing_period": "month",
            "marketplace": marketplace,
        },
        headers=headers(key),
    )
    assert response.status_code == 201, response.text


async def start(
    client: httpx.AsyncClient, bot: dict, request_headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/bots/{bot['id']}/backtests", json={**WINDOW, **body}, headers=request_headers
    )
