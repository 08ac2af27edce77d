"""Fixtures shared by the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.main import create_app


@pytest.fixture
async def second_process(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Another API instance on the same database (and Redis, on the MariaDB run)."""
    other = create_app(settings.model_copy(update={"api_key_cache_ttl_s": 5.0}))
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http
