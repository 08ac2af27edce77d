"""Publishing a job never blocks the event loop: kombu's publish runs in a thread."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from sqlalchemy import text

from app.core.db import create_engine, create_sessionmaker
from app.core.jobs import JobQueue


async def test_a_commit_returns_while_the_broker_is_silent(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}")
    # A broker that accepts connections and never answers: a publish on the loop would hang
    # the commit, and with it every request of the process.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        jobs = JobQueue(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        async with create_sessionmaker(engine)() as session:
            jobs.send_after_commit(session, "trading.dispatch")
            await session.execute(text("SELECT 1"))
            await session.commit()
        sent = asyncio.ensure_future(jobs.drain())
        done, _ = await asyncio.wait([sent], timeout=1.0)
        assert not done  # committed, and the publish still waits on the broker meanwhile
    # Closing the listener resets the connection: the publish fails (logged) and ends.
    await asyncio.wait_for(sent, timeout=60)
    jobs.close()
    await engine.dispose()
