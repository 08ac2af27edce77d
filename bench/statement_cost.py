"""The CPU one read statement costs on each layer the API runs it through.

A renter GET's statement cost more CPU in the layers around the driver than in the driver.
This script takes the layers apart: the same one-row SELECT of a subscription-sized row (13
columns: text, two timestamps, a decimal, JSON), --statements of them from 32 tasks on one
event loop (uvloop, as uvicorn runs it) over 20 connections, in a fresh MariaDB database
dropped after, through:

  driver         asyncmy's own connections and cursors, no SQLAlchemy
  rows           `Rows` through a `RowReader` (app/core/reads.py), as the renter's GETs run
                 it: a connection of asyncmy's pool, the statement on its cursor, each value
                 through its column type's result processor
  checkout       SQLAlchemy's pool (the read engine's): a connection checked out and back,
                 no statement
  core           checkout + AsyncConnection.execute: SQLAlchemy Core on the read engine
  session        a read session (app/core/reads.py) executing it, as the other GETs do

and reports the process's CPU time per statement, the fastest of --rounds runs of each.
To see where a layer's time goes, run one under a sampling profiler:
  .venv/bin/py-spy record --format raw -o prof.txt -- \
    .venv/bin/python bench/statement_cost.py --ways core

The last line printed is one JSON object with every figure, also written to
bench/results/statement_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This checkout's `app`, never an installed copy.
sys.path.insert(0, str(ROOT))

import asyncmy  # noqa: E402
import uvloop  # noqa: E402
from common import fresh_database  # noqa: E402
from sqlalchemy import (  # noqa: E402
    JSON,
    Numeric,
    String,
    bindparam,
    column,
    make_url,
    select,
    table,
    text,
)

from app.core.db import UTCDateTime, create_engine  # noqa: E402
from app.core.reads import RowReader, Rows, create_read_sessionmaker  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "statement_cost.json"
TASKS = 32
CONNECTIONS = 20
COLUMNS = "c0, c1, c2, c3, c4, c5, c6, c7, c8, created_at, updated_at, amount, risk"
TABLE = (
    "CREATE TABLE probe (id CHAR(32) PRIMARY KEY, "
    + ", ".join(f"c{i} VARCHAR(40)" for i in range(9))
    + ", created_at DATETIME(6), updated_at DATETIME(6), amount DECIMAL(36, 18), risk JSON)"
)
ROW = (
    "INSERT INTO probe VALUES ('0', "
    + ", ".join("'some text'" for _ in range(9))
    + ', NOW(6), NOW(6), 100.5, \'{"stop_loss_pct": "5"}\')'
)
DRIVER_SELECT = f"SELECT {COLUMNS} FROM probe WHERE id = %s"
SELECT = text(f"SELECT {COLUMNS} FROM probe WHERE id = :id")
_PROBE = table(
    "probe",
    column("id", String),
    *(column(f"c{i}", String) for i in range(9)),
    column("created_at", UTCDateTime),
    column("updated_at", UTCDateTime),
    column("amount", Numeric(36, 18)),
    column("risk", JSON),
)
ROWS = Rows(
    select(*(_PROBE.c[name] for name in COLUMNS.split(", "))).where(_PROBE.c.id == bindparam("id"))
)


WAYS = ("driver", "rows", "checkout", "core", "session")


async def measure(url: str, statements: int, rounds: int, chosen: list[str]) -> dict[str, float]:
    engine = create_engine(url, autocommit=True)
    sessions = create_read_sessionmaker(engine)
    reader = RowReader(engine)
    parts = make_url(url)
    connections = [
        await asyncmy.connect(
            host=parts.host,
            port=parts.port,
            user=parts.username,
            db=parts.database,
            autocommit=True,
        )
        for _ in range(CONNECTIONS)
    ]
    await (connection := connections[0]).cursor().execute(TABLE)
    await connection.cursor().execute(ROW)
    idle: asyncio.Queue[asyncmy.Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)

    async def driver() -> None:
        connection = await idle.get()
        cursor = connection.cursor()
        await cursor.execute(DRIVER_SELECT, ("0",))
        await cursor.fetchall()
        idle.put_nowait(connection)

    async def checkout() -> None:
        async with engine.connect() as connection:
            await connection.get_raw_connection()

    async def rows() -> None:
        await ROWS.all(reader, id="0")

    async def core() -> None:
        async with engine.connect() as connection:
            (await connection.execute(SELECT, {"id": "0"})).all()

    async def session() -> None:
        async with sessions() as read:
            (await read.execute(SELECT, {"id": "0"})).all()

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "driver": driver,
        "checkout": checkout,
        "rows": rows,
        "core": core,
        "session": session,
    }

    async def lane(way: Callable[[], Awaitable[None]]) -> None:
        for _ in range(statements // TASKS):
            await way()

    fastest: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for name in chosen:  # alternated, so that drift weighs on each alike
                way = ways[name]
                started = time.process_time()
                await asyncio.gather(*(lane(way) for _ in range(TASKS)))
                cpu_us = (time.process_time() - started) / (statements // TASKS * TASKS) * 1e6
                fastest[name] = round(min(cpu_us, fastest.get(name, cpu_us)), 1)
    finally:
        for connection in connections:
            connection.close()
        await reader.close()
        await engine.dispose()
    return fastest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--statements", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mariadb", default="mysql+asyncmy://root@127.0.0.1:3306/")
    parser.add_argument("--ways", default=",".join(WAYS), help="a subset, to profile one")
    args = parser.parse_args()
    chosen = [name for name in WAYS if name in args.ways.split(",")]
    with fresh_database(args.mariadb) as url:
        fastest = uvloop.run(measure(url, args.statements, args.rounds, chosen))
    print(f"\nCPU µs per statement, fastest of {args.rounds} rounds of {args.statements}")
    for name, cpu_us in fastest.items():
        ratio = (
            f"{cpu_us / fastest['driver']:4.1f} times the driver's" if "driver" in fastest else ""
        )
        print(f"  {name:14} {cpu_us:8.1f}   {ratio}")
    summary = {
        "bench": "statement_cost",
        "statements": args.statements,
        "rounds": args.rounds,
        "cpu_us": fastest,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
