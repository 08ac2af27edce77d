"""Thin task wrapper for idempotency records: the hourly purge of expired ones."""

from __future__ import annotations

from datetime import UTC, datetime

from app.idempotency.service import purge_expired
from workers.celery_app import celery_app
from workers.runtime import runtime


@celery_app.task(name="idempotency.purge")
def purge() -> int:
    # No retry of its own: what one run leaves, the next hour's run deletes.
    return runtime().run(purge_expired(runtime().sessionmaker, datetime.now(UTC)))
