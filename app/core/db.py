"""Database engine, sessions and the column types that keep money exact on every backend."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String, event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A 32-hex-char id that sorts by creation time (48-bit ms clock + 80 random bits).

    Lists are paginated by id, so time order and a stable cursor come from one column.
    """
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


class Money(TypeDecorator[Decimal]):
    """Exact decimal: NUMERIC(36, 18) where the database has it, decimal text on SQLite.

    SQLite has no decimal type and SQLAlchemy's Numeric would round-trip through float there.
    """

    impl = Numeric(36, 18)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(36, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value)
        if dialect.name == "sqlite":
            return format(value.normalize(), "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value).normalize() if dialect.name == "sqlite" else Decimal(value)


def case_sensitive_string(length: int) -> String:
    """A string compared byte for byte on every backend.

    MySQL and MariaDB compare strings case-insensitively by default (`utf8mb4_general_ci`), so
    `Order-X` and `order-X` would be one idempotency key or one client order id there while
    SQLite, which compares bytes, keeps them apart.
    """
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
    )


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC (microseconds kept), always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Not value.replace(tzinfo=UTC): on CPython 3.11 that is several times slower than
        # combine, and a catalogue page converts a hundred of them.
        return datetime.combine(value, value.time(), UTC)


# Connections each pool keeps, and the age at which it replaces one: well before MariaDB's
# wait_timeout (8 h) closes it. Shared with the pool of app/core/reads.py's RowReader.
POOL_SIZE = 20
POOL_RECYCLE_S = 1800


def create_engine(database_url: str, *, pool: bool = True, autocommit: bool = False) -> AsyncEngine:
    """The engine; `autocommit` for reads that need no transaction: each statement stands
    alone, and neither COMMIT nor ROLLBACK (not even the pool's on check-in) goes to the server.
    """
    url = make_url(database_url)
    kwargs: dict[str, Any] = {}
    if not pool:
        kwargs["poolclass"] = NullPool
    if url.get_backend_name() == "mysql":
        # REPEATABLE READ would freeze a poll for another transaction's row (an in-flight
        # idempotency record); READ COMMITTED lets each statement see committed work.
        kwargs.update(
            isolation_level="READ COMMITTED", pool_pre_ping=True, pool_recycle=POOL_RECYCLE_S
        )
        if pool:
            # No overflow: past pool_size, every check-in closed a connection and the next
            # checkout opened one (a handshake and session setup per request under load).
            # Above 20 at once, requests wait for a connection instead.
            kwargs.update(pool_size=POOL_SIZE, max_overflow=0)
    elif url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    if autocommit:
        # No ping on checkout, a round trip on every read: pool_recycle replaces connections
        # well before the server's wait_timeout, and a read on one found dead (a restart, a
        # failover) is retried (app/core/reads.py). A transaction cannot be replayed blindly
        # like that, so the default engine keeps its ping.
        kwargs.update(
            isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, pool_pre_ping=False
        )
    # Parameters carry secrets (ciphertexts, key digests, principals): never in a log line or
    # an exception's message.
    engine = create_async_engine(url, hide_parameters=True, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; the busy timeout queues writers instead of
    # failing them with "database is locked"; SQLite enforces foreign keys only when asked.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends cleanly, rolled back otherwise."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
