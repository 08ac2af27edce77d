"""What operators and their tools read: readiness of every dependency the API needs, and
metrics on a listener of their own."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.memory import GC_YOUNG_THRESHOLD
from app.core.settings import Settings
from app.main import create_app
from tests.api.test_contract import assert_error
from tests.helpers import headers
from tests.sandbox_server import free_port


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_ready_is_503_while_the_broker_is_down(settings: Settings) -> None:
    # Jobs sent after a commit would be lost to a broker nobody can reach.
    closed = f"redis://127.0.0.1:{free_port()}/0"
    async with serving(settings.model_copy(update={"celery_broker_url": closed})) as http:
        response = await http.get("/health/ready")
        assert (await http.get("/health/live")).status_code == 200
    assert_error(response, 503, "NOT_READY")
    assert response.json()["error"]["details"] == [{"loc": "broker", "message": "unreachable"}]


async def test_ready_checks_a_reachable_broker(settings: Settings) -> None:
    async with serving(settings) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_metrics_are_served_on_their_own_listener_not_on_the_api(
    settings: Settings, developer_key: str
) -> None:
    port = free_port()
    own_port = settings.model_copy(update={"metrics_port": port})
    scrape = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as scraper:
        async with serving(own_port) as http:
            await http.get("/api/v1/bots", headers=headers(developer_key))
            on_the_api = await http.get("/metrics")
            scraped = await scraper.get(scrape)
        assert_error(on_the_api, 404, "NOT_FOUND")
        assert scraped.status_code == 200
        assert 'http_requests_total{method="GET",route="/api/v1/bots",status="200"} 1.0' in (
            scraped.text
        )
        # The listener stops with the app.
        with pytest.raises(httpx.ConnectError):
            await scraper.get(scrape)


async def test_the_startup_heap_is_frozen_while_serving_and_released_at_shutdown(
    settings: Settings,
) -> None:
    # A full collection walking the startup heap paused every request in flight (the p99 of
    # reads in bench/gateway.py); the tests start many apps in one process, so each gives its
    # heap back to the collector when it stops.
    thresholds = gc.get_threshold()
    async with serving(settings) as http:
        assert (await http.get("/health/live")).status_code == 200
        assert gc.get_freeze_count() > 100_000
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds
