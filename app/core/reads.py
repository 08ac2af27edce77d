"""Reads: no transaction, and one more try on a connection found dead.

Two ways to read, and the rule for choosing:

- A read session (`create_read_sessionmaker`) is the default. It loads entities, for a
  service to work on or a response to be built from, and any read that is not on the list
  below goes through it.
- `Rows` runs a statement compiled once through the database driver, on a connection of the
  driver's own pool (`RowReader`), and returns its rows as dicts. It is kept for the hottest
  GETs, whose rows go straight into a response model with nothing done to them in between:
  the catalogue page (app/bots/repository.py), a renter's subscription and list of
  subscriptions (app/subscriptions/repository.py) and the event feed's position and page
  (app/events/repository.py). On those, SQLAlchemy's asyncio layer
  around the statement and the checkout (a greenlet hop per call, an execution context, a
  Result, an AsyncConnection closed in a task of its own) and the building of ORM objects
  are a large share of the request's CPU; bench/statement_cost.py and bench/gateway_cpu.py
  measure it. A read joins the list only when a benchmark shows that share; its statement is
  the entity read's own select narrowed to the response's columns
  (`select.with_only_columns`), so which rows a caller may see is written once.

The renter dependency (app/deps.py, `RenterRead`) hands a renter's GET both, the read
sessions and the row reader, under the rule above.

A GET needs no transaction. On an autocommit connection each statement sees what is committed
(as READ COMMITTED would), and the request costs neither a COMMIT nor the pool's ROLLBACK on
check-in. Pooled connections are not pinged before use (that is a round trip per request); one
the server has closed (a restart, a failover) fails its statement, the pool forgets it and
every idle connection older than the failure, and the statement, a read that is safe to
repeat, runs once more on a new connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncmy
from sqlalchemy import Dialect, Select, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from app.core.db import POOL_RECYCLE_S, POOL_SIZE


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
    validates a dict faster than it reads an entity's attributes).

    SQLAlchemy still compiles the statement (once per dialect), converts each value with its
    column type's own result processor (so a value comes out as it would through a session)
    and, for the RowReader that runs it, tells a dead connection from a failed statement. The
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

    async def all(self, reader: RowReader, **params: Any) -> list[dict[str, Any]]:
        dialect = reader.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        values = tuple(params[bind] if named else bind for bind, named in compiled.binds)
        raw = await reader.fetch(compiled.sql, values)
        keys, processors = compiled.keys, compiled.processors
        return [
            {
                key: value if convert is None else convert(value)
                for key, convert, value in zip(keys, processors, row, strict=True)
            }
            for row in raw
        ]

    async def one_or_none(self, reader: RowReader, **params: Any) -> dict[str, Any] | None:
        rows = await self.all(reader, **params)
        if len(rows) > 1:
            raise LookupError(f"{len(rows)} rows where at most one was expected")
        return rows[0] if rows else None


async def _run(driver_connection: Any, sql: str, values: tuple[Any, ...]) -> Any:
    # asyncmy's and aiosqlite's connections alike.
    async with driver_connection.cursor() as cursor:
        await cursor.execute(sql, values)
        return await cursor.fetchall()


class _Lender(Protocol):
    async def fetch(self, sql: str, values: tuple[Any, ...]) -> Any:
        """The statement's raw rows, on a connection lent for it. A connection whose statement
        fails or is cancelled is closed, never lent again (it may be dead, or half read)."""

    async def forget_idle(self) -> None:
        """Closes the idle connections: after a disconnect, they are likely dead too."""

    async def close(self) -> None: ...


class _AsyncmyPool:
    """asyncmy's own pool, which checks that a connection is open (the server has not closed
    it) and younger than POOL_RECYCLE_S before lending it."""

    def __init__(self, engine: AsyncEngine) -> None:
        _, self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._pool: asyncmy.Pool | None = None
        self._opening = asyncio.Lock()
        # Readers queue here, first come first served, never in the pool: asyncmy's pool gives
        # a connection back to whoever asks next, so with more readers than connections some
        # would wait for many turns and the tail latency would grow with the load.
        self._turns = asyncio.Semaphore(POOL_SIZE)

    async def _open(self) -> asyncmy.Pool:
        # On first use, inside the event loop the pool belongs to; once however many wait.
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncmy.create_pool(
                    minsize=1,
                    maxsize=POOL_SIZE,
                    pool_recycle=POOL_RECYCLE_S,
                    autocommit=True,
                    **self._connect_args,
                )
            return self._pool

    async def fetch(self, sql: str, values: tuple[Any, ...]) -> Any:
        pool = self._pool or await self._open()
        async with self._turns:
            connection = await pool.acquire()
            try:
                return await _run(connection, sql, values)
            except BaseException:
                connection.close()  # the pool drops a closed connection when it comes back
                raise
            finally:
                pool.release(connection)

    async def forget_idle(self) -> None:
        if self._pool is not None:
            await self._pool.clear()

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()


class _EnginePool:
    """The engine's own pool, for the drivers other than asyncmy (aiosqlite: SQLite in
    development and tests, no network and nothing to gain)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def fetch(self, sql: str, values: tuple[Any, ...]) -> Any:
        async with self._engine.connect() as connection:
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None, "a checked-out connection has its driver's"
            try:
                return await _run(driver, sql, values)
            except BaseException:
                await connection.invalidate()
                raise

    async def forget_idle(self) -> None:
        await self._engine.dispose()

    async def close(self) -> None:
        """Nothing of its own: the engine's owner disposes of it."""


class RowReader:
    """Runs `Rows` on the database of `engine` (an autocommit engine, create_engine(...,
    autocommit=True)) through connections of its driver: asyncmy's pool on MySQL and MariaDB,
    the engine's pool otherwise. One per process, closed with it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.dialect = engine.dialect
        self._lender: _Lender = (
            _AsyncmyPool(engine) if engine.dialect.driver == "asyncmy" else _EnginePool(engine)
        )

    async def fetch(self, sql: str, values: tuple[Any, ...]) -> Any:
        """The raw rows; a connection found dead costs one more try, on a new connection."""
        dbapi = self.dialect.loaded_dbapi
        try:
            return await self._lender.fetch(sql, values)
        except dbapi.Error as exc:
            if not self.dialect.is_disconnect(exc, None, None):
                # As SQLAlchemy raises it, never with the parameters (secrets, principals).
                raise DBAPIError.instance(
                    sql, None, exc, dbapi.Error, hide_parameters=True, dialect=self.dialect
                ) from exc
        await self._lender.forget_idle()
        return await self._lender.fetch(sql, values)

    async def close(self) -> None:
        await self._lender.close()


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions on `engine`, which must be an autocommit engine (create_engine(autocommit=True))."""
    return async_sessionmaker(
        engine, sync_session_class=ReadSession, expire_on_commit=False, autoflush=False
    )
