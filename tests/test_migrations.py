"""One Alembic history: upgrade, downgrade and upgrade again on SQLite and on MariaDB, and the
result matches the models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.cli import ALEMBIC_INI
from app.core.db import create_engine
from app.models import Base
from tests.conftest import fresh_mariadb_database


def alembic(url: str, *args: str) -> None:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    getattr(command, args[0])(config, *args[1:])


async def tables_and_drift(url: str) -> tuple[set[str], list[object]]:
    engine = create_engine(url, pool=False)
    async with engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        drift = await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    await engine.dispose()
    return tables, drift


@pytest.fixture(params=["sqlite", "mariadb"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_mariadb_database() as url:
        yield url


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    expected = set(Base.metadata.tables) | {"alembic_version"}
    alembic(fresh_url, "upgrade", "head")
    tables, drift = asyncio.run(tables_and_drift(fresh_url))
    assert tables == expected
    assert drift == [], f"models and migrations disagree: {drift}"
    alembic(fresh_url, "downgrade", "base")
    tables, _ = asyncio.run(tables_and_drift(fresh_url))
    assert tables <= {"alembic_version"}
    alembic(fresh_url, "upgrade", "head")
    tables, _ = asyncio.run(tables_and_drift(fresh_url))
    assert tables == expected
