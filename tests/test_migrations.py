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


async def _run(
    url: str, statements: list[tuple[str, dict[str, object]]]
) -> list[list[tuple[object, ...]]]:
    engine = create_engine(url, pool=False)
    results = []
    async with engine.begin() as connection:
        for statement, params in statements:
            result = await connection.execute(text(statement), params)
            results.append([tuple(row) for row in result] if result.returns_rows else [])
    await engine.dispose()
    return results


_NOW = "2026-12-01 00:00:00.000000"
_KEY = (
    "INSERT INTO api_keys (id, name, scope, prefix, key_digest, assertion_mode, created_at, "
    "revoked_at) VALUES (:id, :id, 'marketplace', :id, :id, :mode, :now, :revoked)"
)
_PUBLIC_KEY = (
    "INSERT INTO api_key_assertion_keys (id, api_key_id, algorithm, public_key, created_at) "
    "VALUES (:id, :key, 'ed25519', :raw, :now)"
)
_RENTER = (
    "INSERT INTO users (id, principal, kind, created_at) VALUES ('u1', 'aaaaa-aa', 'renter', :now)"
)
_EVENT = (
    "INSERT INTO events (id, type, occurred_at, user_id, data) "
    "VALUES (:id, 'trade.filled', :now, :user_id, '{}')"
)


def _key(key_id: str, mode: str, revoked: str | None = None) -> tuple[str, dict[str, object]]:
    return _KEY, {"id": key_id, "mode": mode, "now": _NOW, "revoked": revoked}


def _public_key(row_id: str, key_id: str, raw: bytes) -> tuple[str, dict[str, object]]:
    return _PUBLIC_KEY, {"id": row_id, "key": key_id, "raw": raw, "now": _NOW}


def test_marketplace_data_moves_to_one_default_marketplace(fresh_url: str) -> None:
    """Keys, renters and listings of the time before marketplaces land in `default`, with the
    strictest live mode and every live key's public keys: nothing refused before is let in."""
    alembic(fresh_url, "upgrade", "0010_events")
    before = [
        _key("k1", "optional"),
        _key("k2", "required"),
        # A revoked key's mode and public key vouch for nothing any more.
        _key("k3", "off", revoked=_NOW),
        _public_key("p1", "k1", b"\x01" * 32),
        _public_key("p2", "k2", b"\x01" * 32),
        _public_key("p3", "k2", b"\x02" * 32),
        _public_key("p4", "k3", b"\x03" * 32),
        (_RENTER, {"now": _NOW}),
        (_EVENT, {"id": "e1", "now": _NOW, "user_id": "u1"}),
        (_EVENT, {"id": "e2", "now": _NOW, "user_id": None}),
    ]
    asyncio.run(_run(fresh_url, before))
    alembic(fresh_url, "upgrade", "head")
    after: list[tuple[str, dict[str, object]]] = [
        ("SELECT id, name, assertion_mode FROM marketplaces", {}),
        ("SELECT marketplace_id, public_key FROM marketplace_assertion_keys", {}),
        ("SELECT id, marketplace_id FROM api_keys ORDER BY id", {}),
        ("SELECT id, marketplace_id FROM users", {}),
        ("SELECT id, marketplace_id FROM events ORDER BY id", {}),
    ]
    marketplaces, public_keys, keys, users, events = asyncio.run(_run(fresh_url, after))
    [(marketplace_id, name, mode)] = marketplaces
    assert (name, mode) == ("default", "required")
    assert sorted(bytes(raw) for _, raw in public_keys) == [b"\x01" * 32, b"\x02" * 32]
    assert {owner for owner, _ in public_keys} == {marketplace_id}
    assert keys == [("k1", marketplace_id), ("k2", marketplace_id), ("k3", marketplace_id)]
    assert users == [("u1", marketplace_id)]
    # A renter's event is read by the renter's marketplace; a bot's by none.
    assert events == [("e1", marketplace_id), ("e2", None)]


def test_no_marketplace_is_made_for_an_empty_database(fresh_url: str) -> None:
    alembic(fresh_url, "upgrade", "head")
    [rows] = asyncio.run(_run(fresh_url, [("SELECT name FROM marketplaces", {})]))
    assert rows == []
