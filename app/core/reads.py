"""Reads: no transaction, and one more try on a connection found dead.

Two ways to read, for two kinds of result. Entities (an ORM object a service works on) come
from a read session. Rows that go straight into a response, on the hot GETs, come from `Rows`:
the statement compiled once and run through the database driver on a pooled connection,
without SQLAlchemy's asyncio layer, execution context and Result, which cost a renter's GET
more than the rest of its statement (bench/statement_cost.py: 262 µs a statement through a
session, 121 µs through the driver on a pooled connection; bench/gateway_cpu.py: a GET of a
subscription 0.81 → 0.58 ms).

A GET needs no transaction. On an autocommit connection each statement sees what is committed
(as READ COMMITTED would), and the request costs neither a COMMIT nor the pool's ROLLBACK on
check-in. Pooled connections are not pinged before use (that is a round trip per request); one
the server has closed (a restart, a failover) fails its statement, SQLAlchemy invalidates it
and every older connection of the pool, and the statement, a read that is safe to repeat,
runs once more on a new connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Select, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session


class ReadSession(Session):
    """The session behind every read session; never committed."""


@event.listens_for(ReadSession, "do_orm_execute")
def _retry_on_dead_connection(state: ORMExecuteState) -> Any:
    try:
        return state.invoke_statement()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        # Gives the dead connection back; the next statement checks out a live one.
        state.session.rollback()
        return state.invoke_statement()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # Each positional parameter: (name, True) for the caller's value by that name, or
    # (value, False) for the statement's own literal.
    binds: tuple[tuple[Any, bool], ...]
    keys: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


class Rows:
    """A SELECT whose rows are dicts of its columns, for a response model to validate (pydantic
    validates a dict in a third of the time it takes over an entity's attributes).

    SQLAlchemy still compiles the statement (once per dialect), lends the pooled connection,
    converts each value with its column type's own result processor (so a value comes out as
    it would through a session) and tells a dead connection from a failed statement. The
    parameters are plain values (strings, numbers) that the driver takes as they are.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        for bind in compiled.binds.values():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"parameter {bind.key!r} needs converting; read it in a session")
        if not compiled.positional or compiled.positiontup is None:
            raise TypeError(
                f"{dialect.name}'s driver takes named parameters; Rows passes them by position"
            )
        columns = self.statement.selected_columns
        made = _Compiled(
            sql=compiled.string,
            binds=tuple(
                (name, True) if bind.required else (bind.effective_value, False)
                for name, bind in ((name, compiled.binds[name]) for name in compiled.positiontup)
            ),
            keys=tuple(columns.keys()),
            processors=tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns
            ),
        )
        self._compiled[dialect.name] = made
        return made

    async def all(self, engine: AsyncEngine, **params: Any) -> list[dict[str, Any]]:
        """The rows, on a pooled connection of `engine` (an autocommit engine); a connection
        the server has closed costs one more try, as a read session's statement would."""
        dialect = engine.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        values = tuple(params[bind] if named else bind for bind, named in compiled.binds)
        try:
            async with engine.connect() as connection:
                raw = await self._fetch(connection, compiled.sql, values)
        except dialect.loaded_dbapi.Error as exc:
            if not dialect.is_disconnect(exc, None, None):
                raise DBAPIError.instance(
                    compiled.sql,
                    None,
                    exc,
                    dialect.loaded_dbapi.Error,
                    hide_parameters=True,
                    dialect=dialect,
                ) from exc
            # As SQLAlchemy does on a disconnect: the server went away (a restart, a
            # failover), so every connection pooled before now is dead too.
            await engine.dispose()
            async with engine.connect() as connection:
                raw = await self._fetch(connection, compiled.sql, values)
        keys, processors = compiled.keys, compiled.processors
        return [
            {
                key: value if convert is None else convert(value)
                for key, convert, value in zip(keys, processors, row, strict=True)
            }
            for row in raw
        ]

    async def one_or_none(self, engine: AsyncEngine, **params: Any) -> dict[str, Any] | None:
        rows = await self.all(engine, **params)
        if len(rows) > 1:
            raise LookupError(f"{len(rows)} rows where at most one was expected")
        return rows[0] if rows else None

    @staticmethod
    async def _fetch(connection: AsyncConnection, sql: str, values: tuple[Any, ...]) -> Any:
        # Not `await connection.get_raw_connection()`, a greenlet hop to read an attribute: the
        # connection was checked out just now, so nothing needs doing to hand it over.
        assert connection.sync_connection is not None, "a started connection"
        driver = connection.sync_connection.connection.driver_connection
        assert driver is not None, "a checked-out connection has its driver's"
        try:
            # asyncmy's and aiosqlite's cursors alike.
            async with driver.cursor() as cursor:
                await cursor.execute(sql, values)
                return await cursor.fetchall()
        except BaseException:
            # Never back into the pool in an unknown state (a statement half read, or the
            # connection dead): closed, and the pool opens a new one when needed.
            await connection.invalidate()
            raise


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine`, which must be an autocommit engine (create_engine(autocommit=True))."""
    return async_sessionmaker(
        engine, sync_session_class=ReadSession, expire_on_commit=False, autoflush=False
    )
