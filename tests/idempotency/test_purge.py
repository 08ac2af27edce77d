"""Expired idempotency records are deleted in batches; live and running ones stay."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from app.api_keys.schemas import Scope
from app.api_keys.service import create_api_key
from app.core.db import create_engine, create_sessionmaker, session_scope, utcnow
from app.core.settings import Settings
from app.idempotency import service
from app.models import IdempotencyRecord
from workers.celery_app import celery_app
from workers.schedule import beat_schedule


async def test_purge_deletes_expired_records_only(settings: Settings) -> None:
    engine = create_engine(settings.database_url, pool=False)
    sessionmaker = create_sessionmaker(engine)
    now = utcnow()
    ttl = timedelta(hours=settings.idempotency_ttl_hours)

    async def record(key: str, claimed: datetime, completed: datetime | None) -> str:
        async with session_scope(sessionmaker) as session:
            record_id = await service.claim(session, settings, api_key_id, key, "f" * 64, claimed)
            if completed is not None:
                assert await service.complete(
                    session, settings, record_id, 201, "application/json", b"x", "k", completed
                )
            return record_id

    try:
        async with session_scope(sessionmaker) as session:
            created = await create_api_key(
                session, "purge", Scope.marketplace, create_marketplace=True
            )
            api_key_id = created.row.id
        # Five completed longer ago than the lifetime: more than one batch of two.
        expired = [
            await record(f"old-{n}", now - ttl - timedelta(hours=2), now - ttl - timedelta(hours=1))
            for n in range(5)
        ]
        # A request whose process died: its lease is over, nobody holds it.
        crashed = await record("crashed", now - timedelta(minutes=5), None)
        kept = {
            # Claimed more than a day ago, completed within the day: it lives from completion.
            await record("slow", now - ttl - timedelta(minutes=1), now - timedelta(minutes=1)),
            await record("recent", now - timedelta(hours=1), now - timedelta(hours=1)),
            await record("running", now - timedelta(seconds=5), None),
        }

        purged = await service.purge_expired(sessionmaker, now, batch=2)

        async with sessionmaker() as session:
            left = set(
                (
                    await session.scalars(
                        select(IdempotencyRecord.id).where(
                            IdempotencyRecord.api_key_id == api_key_id
                        )
                    )
                ).all()
            )
        assert left == kept
        assert purged >= len(expired) + 1 and crashed not in left
        # Nothing left to do: a second run deletes nothing of ours and fails on nothing.
        await service.purge_expired(sessionmaker, now, batch=2)
        async with sessionmaker() as session:
            rows = await session.scalars(
                select(IdempotencyRecord.id).where(IdempotencyRecord.api_key_id == api_key_id)
            )
            assert set(rows.all()) == kept
    finally:
        await engine.dispose()


def test_beat_sends_the_purge_hourly_to_a_registered_task(settings: Settings) -> None:
    celery_app.loader.import_default_modules()
    entry = beat_schedule(settings)["purge-idempotency"]
    assert entry["task"] == "idempotency.purge" and entry["task"] in celery_app.tasks
    assert entry["schedule"].minute == {30} and len(entry["schedule"].hour) == 24
