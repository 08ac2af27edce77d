"""Set-up shared by the benchmark scripts (run as `python bench/<name>.py`, so this directory
is on the import path)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator

from sqlalchemy import text

from app.core.db import create_engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _execute(url: str, statement: str) -> None:
    engine = create_engine(url, pool=False)
    async with engine.begin() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on the MariaDB server at `server` (a URL ending in '/'), dropped after."""
    name = f"botmarket_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_execute(server, f"CREATE DATABASE {name}"))
    try:
        yield f"{server}{name}"
    finally:
        asyncio.run(_execute(server, f"DROP DATABASE IF EXISTS {name}"))
