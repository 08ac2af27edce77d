"""Thin task wrapper of subscriptions: beat's expiry sweep (app/subscriptions/flows.py)."""

from __future__ import annotations

from workers.celery_app import celery_app
from workers.runtime import runtime
from workers.tasks import RETRYING, now


@celery_app.task(name="subscriptions.expire", **RETRYING)
def expire() -> int:
    return len(runtime().run(runtime().subscriptions.expire(now())))
