"""Fixtures shared by the API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI

from app.core.migrations import migrate
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import REDIS_URL, fresh_mariadb_database, require_service
from tests.helpers import api_processes

# The execution tests' executor (and its clock) places paper trades for the API tests' renters.
from tests.trading.test_execution import clock, executor  # noqa: F401


@pytest.fixture
async def second_process(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Another API instance on the same database (and Redis, on the MariaDB run)."""
    other = create_app(settings.model_copy(update={"api_key_cache_ttl_s": 5.0}))
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http


@dataclass(frozen=True)
class ApiReplicas:
    """API processes serving one deployment: the same MariaDB, Redis and Fernet keys."""

    settings: Settings
    urls: tuple[str, ...]


@pytest.fixture(scope="module")
def api_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiReplicas]:
    """Two real uvicorn API processes on MariaDB and Redis, started once per module.

    MariaDB and Redis only: the embedded SQLite default is a one-process deployment.
    """
    require_service("Redis", "127.0.0.1", 6379)
    directory = tmp_path_factory.mktemp("replicas")
    with fresh_mariadb_database() as database_url:
        migrate(database_url)
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            # Every replica must decrypt the responses another one stored.
            "FERNET_KEYS": f"replicas:{Fernet.generate_key().decode()}",
            # Jobs go to a broker of the module's own that no worker reads.
            "CELERY_BROKER_URL": f"sqla+sqlite:///{directory / 'broker.sqlite'}",
        }
        with api_processes(env, directory, 2) as urls:
            yield ApiReplicas(Settings(database_url=database_url, redis_url=REDIS_URL), tuple(urls))
