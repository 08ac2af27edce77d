"""One Alembic history: upgrade, downgrade and upgrade again on SQLite and on MariaDB, and the
result matches the models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from app.core.db import create_engine
from app.core.migrations import alembic_config
from app.models import Base
from tests.conftest import fresh_mariadb_database


def alembic(url: str, *args: str) -> None:
    getattr(command, args[0])(alembic_config(url), *args[1:])


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


# Columns compared byte for byte: a case-insensitive collation would make `Order-X` and
# `order-X` one idempotency key, or one client order id.
CASE_SENSITIVE = {
    ("api_keys", "prefix"),
    ("idempotency_records", "idempotency_key"),
    ("trades", "client_order_id"),
}


def test_key_like_columns_compare_case_sensitively_on_mariadb() -> None:
    with fresh_mariadb_database() as url:
        alembic(url, "upgrade", "head")
        assert asyncio.run(collations(url, CASE_SENSITIVE)) == dict.fromkeys(
            CASE_SENSITIVE, "utf8mb4_bin"
        )


async def collations(url: str, columns: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    engine = create_engine(url, pool=False)
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = DATABASE()"
            )
        )
        found = {(table, column): collation for table, column, collation in rows}
    await engine.dispose()
    return {column: found[column] for column in columns}
