"""Whether the services the API needs answer: the readiness probe's and the console's
health page's check."""

from __future__ import annotations

import asyncio

from kombu import Connection
from sqlalchemy import text

from app.core.redis_clients import broker_tls
from app.core.settings import Settings
from app.runtime import Runtime

# A readiness probe waits this long for the broker at most: well within compose's 5 s.
BROKER_CHECK_TIMEOUT_S = 2.0


def connect_to_broker(url: str, tls: dict[str, object]) -> None:
    """Connects once and hangs up; raises if the broker cannot be reached. Blocking."""
    # Bounded on its own too, so that a silent broker does not keep the thread forever; only
    # Redis takes a socket timeout (the SQLAlchemy transport hands options to create_engine).
    options = {"socket_timeout": BROKER_CHECK_TIMEOUT_S} if url.startswith("redis") else {}
    with Connection(
        url, ssl=tls or False, connect_timeout=BROKER_CHECK_TIMEOUT_S, transport_options=options
    ) as connection:
        connection.ensure_connection(max_retries=0)


async def unreachable(runtime: Runtime, settings: Settings) -> list[str]:
    """The names of the services a readiness probe cannot reach: database, redis, broker."""
    failed: list[str] = []
    try:
        async with runtime.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        failed.append("database")
    if runtime.redis is not None:
        try:
            await runtime.redis.ping()
        except Exception:
            failed.append("redis")
    try:
        # kombu connects synchronously: in a thread, and given up on after the timeout.
        await asyncio.wait_for(
            asyncio.to_thread(connect_to_broker, settings.broker_url, broker_tls(settings)),
            BROKER_CHECK_TIMEOUT_S,
        )
    except Exception:
        failed.append("broker")
    return failed
