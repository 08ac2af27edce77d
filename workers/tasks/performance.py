"""Thin task wrapper of performance: the hourly equity points (app/performance/flows.py)."""

from __future__ import annotations

from workers.celery_app import celery_app
from workers.runtime import runtime
from workers.tasks import RETRYING, now


@celery_app.task(name="performance.snapshot", **RETRYING)
def snapshot() -> int:
    return runtime().run(runtime().performance.snapshot(now()))
