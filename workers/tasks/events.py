"""Thin task wrappers for the event outbox: numbering committed events, purging old ones."""

from __future__ import annotations

from datetime import timedelta

from app.core.settings import get_settings
from app.events.feed import purge_older_than, sequence
from workers.celery_app import celery_app
from workers.runtime import runtime
from workers.tasks import now


@celery_app.task(name="events.sequence")
def sequence_events() -> int:
    # No retry of its own: a backlog is numbered batch after batch for a few seconds, and the
    # next run, a second later, numbers what this one left.
    return runtime().run(sequence(runtime().sessionmaker))


@celery_app.task(name="events.purge")
def purge() -> int:
    # No retry of its own either: what one run leaves, the next hour's run deletes.
    retention = timedelta(days=get_settings().event_retention_days)
    return runtime().run(purge_older_than(runtime().sessionmaker, now(), retention))
