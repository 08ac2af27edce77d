"""Thin task wrappers for the event outbox: numbering committed events, purging old ones (and
the live stream's expired tickets)."""

from __future__ import annotations

from datetime import timedelta

from app.core.settings import get_settings
from app.events.feed import purge_older_than, sequence
from app.events.tickets import purge_expired
from workers.celery_app import celery_app
from workers.runtime import runtime
from workers.tasks import now


@celery_app.task(name="events.sequence")
def sequence_events() -> int:
    # No retry of its own: a backlog is numbered batch after batch for a few seconds, and the
    # next run, a second later, numbers what this one left.
    numbered = runtime().run(sequence(runtime().sessionmaker))
    if numbered:
        # Events whose writer rang no doorbell (a session without one): the hubs look now,
        # rather than at their next safety read.
        runtime().doorbell.ring()
    return numbered


@celery_app.task(name="events.purge")
def purge() -> int:
    # No retry of its own either: what one run leaves, the next hour's run deletes.
    retention = timedelta(days=get_settings().event_retention_days)
    runtime().run(purge_expired(runtime().sessionmaker, now()))
    return runtime().run(purge_older_than(runtime().sessionmaker, now(), retention))
