"""Thin task wrappers for webhooks: matching new events to endpoints, delivering, and the
sweep that resends what is due (retries, and the claims of workers that died)."""

from __future__ import annotations

from workers.celery_app import celery_app
from workers.runtime import runtime


@celery_app.task(name="webhooks.dispatch")
def dispatch() -> int:
    # No retry of its own: the next run, a second later, matches what this one left.
    return runtime().run(runtime().webhooks.dispatch())


@celery_app.task(name="webhooks.deliver")
def deliver(delivery_ids: list[str]) -> int:
    # No retry of its own: a failed attempt is scheduled in the database, and a delivery
    # left claimed by a dead worker is resent by the sweep once its lease runs out.
    return runtime().run(runtime().webhooks.deliver(delivery_ids))


@celery_app.task(name="webhooks.retry")
def retry() -> int:
    return runtime().run(runtime().webhooks.retry())
