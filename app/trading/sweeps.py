"""The reconciler's last sweep, kept in Redis for the admin's health page: when it ran and what
it resolved. Beat sends a sweep every RECONCILE_INTERVAL_S, so a recent sweep also says that
beat (and a worker taking from the default queue) is alive. Without Redis nothing is kept."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from redis.asyncio import Redis

from app.core.evictions import channel_of
from app.trading.flows import Reconciled


@dataclass(frozen=True)
class Sweep:
    at: datetime
    outcome: Reconciled


def _key(database_url: str) -> str:
    # One deployment's key: test runs and deployments may share a Redis server.
    return channel_of(database_url, "reconciler:last-sweep")


async def record(redis: Redis, database_url: str, sweep: Sweep) -> None:
    value = {"at": sweep.at.isoformat(), **asdict(sweep.outcome)}
    await redis.set(_key(database_url), json.dumps(value))


async def last(redis: Redis, database_url: str) -> Sweep | None:
    raw = await redis.get(_key(database_url))
    if raw is None:
        return None
    value = json.loads(raw)
    return Sweep(datetime.fromisoformat(value.pop("at")), Reconciled(**value))
