"""Error shapes for everything FastAPI/Starlette can raise, request ids, limits, health, metrics."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from app.core.logging import JsonFormatter
from app.core.settings import Settings
from app.main import create_app
from tests.api.test_contract import assert_error
from tests.helpers import headers


async def test_framework_errors_have_the_contract_shape(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    assert_error(await client.get("/nowhere"), 404, "NOT_FOUND")
    assert_error(await client.put("/health/live"), 405, "METHOD_NOT_ALLOWED")
    assert_error(
        await client.post(
            "/api/v1/bots",
            content=b"{not json",
            headers={**headers(developer_key), "Content-Type": "application/json"},
        ),
        422,
        "VALIDATION_ERROR",
    )


async def test_unexpected_errors_are_opaque_500s_with_a_request_id(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail: /var/secret/path")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/boom", headers={"X-Request-ID": "trace-me-1"})
    assert_error(response, 500, "INTERNAL_ERROR")
    assert "secret" not in response.text
    assert response.headers["x-request-id"] == "trace-me-1"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "internal detail" in str(errors[0].exc_info)


async def test_every_response_has_a_request_id_and_logs_carry_it(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    offered = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert offered.headers["x-request-id"] == "abc-123"
    made = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith junk"})
    assert len(made.headers["x-request-id"]) == 32
    assert "x-request-id" in (await client.get("/nowhere")).headers
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    access = [line for line in lines if line["logger"] == "botmarket.access"]
    assert {line["request_id"] for line in access} >= {"abc-123", made.headers["x-request-id"]}


async def test_bodies_over_64_kib_are_413(client: httpx.AsyncClient, developer_key: str) -> None:
    big = {"name": "x", "description": "y" * (65 * 1024)}
    assert_error(
        await client.post("/api/v1/bots", json=big, headers=headers(developer_key)),
        413,
        "PAYLOAD_TOO_LARGE",
    )

    async def chunks():  # no Content-Length: the limit must hold on the streamed bytes too
        for _ in range(70):
            yield b"x" * 1024

    streamed = await client.post("/api/v1/bots", content=chunks(), headers=headers(developer_key))
    assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")


async def test_rate_limit_is_per_key_answers_429_and_skips_replays(
    settings: Settings, developer_key: str, admin_key: str
) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 3})
    application = create_app(limited)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = await http.post(
                "/api/v1/bots",
                json={"name": "r"},
                headers=headers(developer_key, idempotency_key="rl-1"),
            )
            assert first.status_code == 201
            for _ in range(5):  # replays do not count against the budget
                replay = await http.post(
                    "/api/v1/bots",
                    json={"name": "r"},
                    headers=headers(developer_key, idempotency_key="rl-1"),
                )
                assert replay.status_code == 201
            statuses = [
                (await http.get("/api/v1/bots", headers=headers(developer_key))).status_code
                for _ in range(3)
            ]
            assert statuses == [200, 200, 429]
            refused = await http.get("/api/v1/bots", headers=headers(developer_key))
            assert_error(refused, 429, "RATE_LIMITED")
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert (await http.get("/api/v1/bots", headers=headers(admin_key))).status_code == 200


async def test_ready_names_the_failed_dependency(settings: Settings) -> None:
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    application = create_app(broken)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/health/ready")
            assert (await http.get("/health/live")).status_code == 200
    assert_error(response, 503, "NOT_READY")
    assert "redis" in response.json()["error"]["message"]


async def test_metrics_count_requests_by_route_template(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    for bot_id in ("a" * 32, "b" * 32):
        await client.get(f"/api/v1/bots/{bot_id}", headers=headers(developer_key))
    text = (await client.get("/metrics")).text
    assert (
        'http_requests_total{method="GET",route="/api/v1/bots/{bot_id}",status="404"} 2.0' in text
    )
    assert "http_request_duration_seconds_bucket" in text
    assert "a" * 32 not in text


async def test_oversized_or_too_many_headers_are_431(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    big = await client.get(
        "/api/v1/bots", headers={**headers(developer_key), "X-Big": "x" * (8 * 1024 * 1024)}
    )
    assert_error(big, 431, "REQUEST_HEADERS_TOO_LARGE")
    many = [("X-API-Key", developer_key)] + [(f"x-h{i}", "1") for i in range(1_000)]
    assert_error(await client.get("/api/v1/bots", headers=many), 431, "REQUEST_HEADERS_TOO_LARGE")
    normal = [("X-API-Key", developer_key)] + [(f"x-h{i}", "1") for i in range(50)]
    assert (await client.get("/api/v1/bots", headers=normal)).status_code == 200
