"""Shared fixtures: the API on a real database (SQLite always, MariaDB when it runs here).

MariaDB and Redis tests skip when the servers are absent, except under CI (any value but
`false`/`0`) or REQUIRE_SERVICES=1, where their absence fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from app.api_keys.schemas import Scope
from app.api_keys.service import create_api_key
from app.core.db import create_engine, create_sessionmaker, session_scope
from app.core.migrations import migrate
from app.core.settings import Settings
from app.core.signing import generate_seed
from app.main import create_app
from app.models import Base
from tests.fakes import RunningFakes, serve_fakes
from tests.sandbox_server import SandboxServer, serve_sandbox

MARIADB_HOST, MARIADB_PORT = "127.0.0.1", 3306


def redis_db(slot: int) -> int:
    """The Redis database of one use (0: the general one, 1: the worker stack's, 2: the
    backtest worker's), each pytest-xdist worker with three of its own: one worker's queues,
    flushes and locks never reach another's tests."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    return 15 - 3 * worker - slot


REDIS_URL = f"redis://127.0.0.1:6379/{redis_db(0)}"


def services_required(environ: Mapping[str, str]) -> bool:
    """Whether an absent MariaDB or Redis fails the run instead of skipping its tests.

    CI runners spell the flag differently (`true`, `True`, `1`, `yes`): any non-empty CI
    other than `false`/`0` counts, so a spelling never turns missing services into skips.
    """
    ci = environ.get("CI", "").strip().lower()
    return ci not in ("", "false", "0") or environ.get("REQUIRE_SERVICES") == "1"


SERVICES_REQUIRED = services_required(os.environ)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unavailable(message: str) -> NoReturn:
    """Skip the test for want of something this machine lacks, or fail it where CI or
    REQUIRE_SERVICES=1 requires everything."""
    if SERVICES_REQUIRED:
        pytest.fail(f"{message}, and CI or REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


def require_service(name: str, host: str, port: int) -> None:
    if not _reachable(host, port):
        unavailable(f"{name} is not running on {host}:{port}")


@contextlib.contextmanager
def fresh_mariadb_database() -> Iterator[str]:
    """A new, empty database on the local MariaDB, dropped afterwards."""
    require_service("MariaDB", MARIADB_HOST, MARIADB_PORT)
    name = f"botmarket_test_{uuid.uuid4().hex[:8]}"
    server = f"mysql+asyncmy://root@{MARIADB_HOST}:{MARIADB_PORT}/"
    asyncio.run(_execute(server, f"CREATE DATABASE {name}"))
    try:
        yield f"{server}{name}"
    finally:
        asyncio.run(_execute(server, f"DROP DATABASE IF EXISTS {name}"))


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    with fresh_mariadb_database() as url:
        yield url


async def _execute(url: str, statement: str) -> None:
    engine = create_engine(url, pool=False)
    async with engine.begin() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    migrate(url)
    return url


def make_settings(database_url: str, broker_dir: Path) -> Settings:
    # MariaDB runs with Redis (shared rate limits, revocation broadcast); SQLite without.
    redis_url = None
    if database_url.startswith("mysql"):
        require_service("Redis", "127.0.0.1", 6379)
        redis_url = REDIS_URL
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        fernet_keys=f"test:{Fernet.generate_key().decode()}",
        signing_keys=f"test:{generate_seed()}",
        # Each test's jobs go to a broker of its own, where a test can read them.
        celery_broker_url=f"sqla+sqlite:///{broker_dir / 'broker.sqlite'}",
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def empty_database(settings: Settings) -> None:
    """Every table emptied, once per test and before any key of it is made: the app and the
    key fixtures depend on it (a marketplace left by an earlier test would lend its assertion
    rules to this test's keys)."""
    engine = create_engine(settings.database_url, pool=False)
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
    await engine.dispose()


@pytest.fixture
async def app(settings: Settings, empty_database: None) -> AsyncIterator[object]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def make_key(
    settings: Settings, scope: Scope, name: str = "test", marketplace: str | None = None
) -> str:
    """A key; a marketplace key in `marketplace` (made when missing), by default `default`."""
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            created = await create_api_key(
                session, name, scope, marketplace=marketplace, create_marketplace=True
            )
            return created.plaintext
    finally:
        await engine.dispose()


@pytest.fixture
async def admin_key(settings: Settings, empty_database: None) -> str:
    return await make_key(settings, Scope.admin, "admin")


@pytest.fixture
async def developer_key(settings: Settings, empty_database: None) -> str:
    return await make_key(settings, Scope.developer, "developer")


@pytest.fixture
async def marketplace_key(settings: Settings, empty_database: None) -> str:
    return await make_key(settings, Scope.marketplace, "marketplace")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with serve_sandbox() as server:
        yield server


@pytest.fixture(scope="session")
def llm_fakes_server() -> Iterator[RunningFakes]:
    with serve_fakes() as fakes:
        yield fakes


@pytest.fixture
def llm_fakes(llm_fakes_server: RunningFakes) -> RunningFakes:
    for fake in llm_fakes_server.all:
        fake.reset()
    return llm_fakes_server
